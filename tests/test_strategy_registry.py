"""The strategy registry: a strategy defined here, registered in one call, runs everywhere."""

import sys

import numpy as np
import pytest

from skpeal import strategies as st
from skpeal.experiment import ExperimentConfig, run_experiment
from skpeal.experiment.runner import _acquisition_scores
from skpeal.strategies import get_strategy, register_strategy, unregister_strategy
from tests.conftest import TINY

CALLS = []


def second_best_scores(proba):
    """The second-highest probability of each row (a small top-two gap scores high)."""
    p = np.asarray(proba, dtype=np.float64)
    CALLS.append(p.shape[0])
    return -np.partition(-p, 1, axis=1)[:, 1]


@pytest.fixture
def second_best():
    CALLS.clear()
    record = register_strategy("second-best", score=second_best_scores)  # the one call
    yield record
    unregister_strategy("second-best")


def test_the_record_is_typed_and_read_back(second_best):
    assert get_strategy("second-best") is second_best
    assert get_strategy(second_best.query) is second_best
    assert second_best.topk and not second_best.shardable
    assert second_best.needs == frozenset({"proba"}) and second_best.uses_model
    assert "second-best" in st.strategy_names()
    from skpeal.experiment import STRATEGIES

    assert STRATEGIES["second-best"] is second_best.query
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("second-best", score=second_best_scores)
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(_acquisition_scores("calibrated-second-best", p), [0.3, 0.4])


def test_builtin_records():
    assert st.strategy_names()[:7] == ["random", "entropy", "margin", "least-confidence",
                                       "badge", "coreset", "featdist"]
    assert get_strategy("entropy").query is st.entropy_sampling
    assert get_strategy("entropy").score is st.entropy_scores
    assert not get_strategy("random").uses_model
    assert get_strategy("coreset").needs_labels and get_strategy("coreset").shardable
    assert get_strategy("featdist").topk and get_strategy("featdist").uses_features
    assert get_strategy("badge").needs >= {"gradients"}
    assert get_strategy(lambda *a: None, None) is None


@pytest.mark.parametrize("kw, match", [
    (dict(name="calibrated-x", score=np.max), "reserved"),
    (dict(name="linear-probe", score=np.max), "reserved"),
    (dict(name="", score=np.max), "non-empty"),
    (dict(name="x"), "impl= .* or score="),
    (dict(name="x", impl=3), "impl must be callable"),
    (dict(name="x", score=np.max, needs=("proba", "gpu")), "unknown need 'gpu'"),
])
def test_bad_registrations_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        register_strategy(**kw)
    assert "x" not in st.strategy_names()
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        get_strategy("nope")


def test_class_balanced_is_a_typed_object(second_best):
    q = st.class_balanced(second_best.query, gamma=0.5, random_state=0)
    assert isinstance(q, st.ClassBalanced)
    assert q.strategy is second_best.query and q.gamma == 0.5
    assert q.__name__ == "class_balanced(second_best_sampling, gamma=0.5)"
    assert q.n_candidates(3, 40) == 20


def test_runs_in_skpeal_run(second_best, tmp_path):
    cfg = ExperimentConfig(data="digits", model="skpeal-tiny", pretrained=None,
                           strategies=["second-best", "calibrated-second-best"], rounds=2,
                           seeds=[0], pool_size=100, test_size=40, init="zero-shot",
                           estimator_params=dict(n_ctx=4, max_epochs=1))
    df = run_experiment(cfg, tmp_path, progress=False)
    assert list(df.strategy.unique()) == ["second-best", "calibrated-second-best"]
    # per strategy: its queries scored the pool (100 rows, then the 90 left) and its
    # error-detection AUROC scored the 40 test images with it, every round
    assert CALLS == [100, 40, 90, 40] * 2
    assert df.accuracy.between(0, 1).all()


def test_runs_in_a_labelling_session(second_best, tmp_path):
    from skpeal import CLIPAdapterClassifier
    from skpeal.labeling import LabelingSession
    from tests.labeling.conftest import CLASSES, TINY_EST, make_images

    truth = make_images(tmp_path / "images", n=30)
    s = LabelingSession(tmp_path / "project", images=tmp_path / "images", classes=CLASSES,
                        estimator=CLIPAdapterClassifier(**TINY_EST), batch_size=4,
                        strategy=second_best.query, balance="none")
    try:
        s.prepare()
        batch = s.next_batch()
        assert len(batch) == 4 and CALLS == [30]  # the zero-shot model's scores of the pool
        s.simulate(lambda i, p: truth[p], 1)
        assert len(CALLS) == 2  # the next batch: the refitted model's scores, same strategy
        assert s.status()["n_labelled"] == 4
    finally:
        s.close()


def test_runs_on_the_ray_scorer(second_best, digits):
    ray = pytest.importorskip("ray")
    from skpeal import CLIPAdapterClassifier
    from skpeal.distributed import RayPoolScorer

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    X, y, _, _ = digits
    clf = CLIPAdapterClassifier(**TINY, max_epochs=1, predict_batch_size=32).fit(X[:40], y[:40])
    pool = X[40:200]
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        scorer = RayPoolScorer(block_size=64)
        got = scorer.query(second_best.query, clf, pool, 6, random_state=3)
        want = second_best.query(clf, pool, 6, random_state=3)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-9)
        # the registry says top-k: each block returned its own top 6, not its rows
        assert scorer.stats_["rows_returned"] == scorer.stats_["n_blocks"] * 6 < len(pool)
        pcb = st.class_balanced(second_best.query, gamma=0.2)
        got = scorer.query(pcb, clf, pool, 6, random_state=5, y_labeled=y[:40])
        want = pcb(clf, pool, 6, random_state=5, y_labeled=y[:40])
        np.testing.assert_array_equal(got[0], want[0])
    finally:
        if started:
            ray.shutdown()
