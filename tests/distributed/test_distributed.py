"""skpeal.distributed on a local Ray started here (2 CPUs, one instance for the module)."""

import os
import signal
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from skpeal import CLIPAdapterClassifier, _pool  # noqa: E402
from skpeal import strategies as st  # noqa: E402
from skpeal.distributed import (  # noqa: E402
    ParquetFeatureStore,
    RayPoolScorer,
    distributed_strategy,
    plan_blocks,
)
from tests.conftest import TINY  # noqa: E402

# Helper classes of this module travel to the actors by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _, _ = digits
    clf = CLIPAdapterClassifier(**TINY, max_epochs=1, predict_batch_size=32).fit(X[:40], y[:40])
    return clf, X[:40], y[:40], X[40:400]


class QuantizedModel:
    """A picklable numpy classifier whose probabilities take few values: many exact ties."""

    classes_ = np.arange(4)

    def predict_proba(self, X):
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        z = np.round(X[:, :4] * 2) / 2
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class KillOnce:
    """Delegates to ``est``; the first scoring call (marked by a file) kills its process."""

    def __init__(self, est, marker):
        self.est, self.marker = est, marker
        self.classes_ = est.classes_

    def predict_proba(self, X):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.est.predict_proba(X)


def test_plan_blocks_cuts_at_batch_multiples():
    assert plan_blocks(10, 4, 5) == [(0, 8), (8, 10)]
    assert plan_blocks(7, 4) == [(0, 4), (4, 7)]
    with pytest.raises(ValueError, match="block_size"):
        plan_blocks(10, 4, 0)


@pytest.mark.parametrize(
    "strategy", [st.entropy_sampling, st.margin_sampling, st.least_confidence_sampling]
)
def test_uncertainty_same_as_in_process(local_ray, fitted, strategy):
    clf, _, _, pool = fitted
    scorer = RayPoolScorer(block_size=64)
    got = scorer.query(strategy, clf, pool, 12, random_state=3)
    want = strategy(clf, pool, 12, random_state=3)
    np.testing.assert_array_equal(got[0], want[0])
    # an actor of 1 CPU runs torch on 1 thread, the driver on 2: on some CPUs (a 2-core
    # AMD EPYC) that changes the probabilities' last bits (2.4e-7), so scores agree to
    # float rounding; the indices above are exact
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-9)
    assert scorer.stats_["n_blocks"] == 6  # 360 rows in blocks of 64 (two batches of 32)
    assert scorer.stats_["rows_returned"] == 6 * 12  # per-block top-k, not the pool


def test_ties_and_generators_exact(local_ray):
    """Massive ties: the per-block keys reproduce the in-process tie breaking and RNG use."""
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 3, size=(500, 4)).astype(np.float64)
    model = QuantizedModel()
    assert np.unique(st.entropy_scores(model.predict_proba(pool))).size < 30
    scorer = RayPoolScorer(block_size=70, num_actors=2)
    for strategy in (st.entropy_sampling, st.margin_sampling):
        g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
        got = scorer.query(strategy, model, pool, 40, random_state=g1)
        want = strategy(model, pool, 40, random_state=g2)
        np.testing.assert_array_equal(got[0], want[0])
        assert g1.random() == g2.random()  # the generator was advanced exactly as in-process
    y_lab = np.array([0, 0, 1, 2, 2, 2])
    for base in (st.entropy_sampling, st.random_sampling):
        q1 = st.class_balanced(base, gamma=0.3, random_state=5)
        q2 = st.class_balanced(base, gamma=0.3, random_state=5)
        for _ in range(2):  # the wrapper's own generator carries over between calls
            got = scorer.query(q1, model, pool, 25, y_labeled=y_lab)
            want = q2(model, pool, 25, y_labeled=y_lab)
            np.testing.assert_array_equal(got[0], want[0])


def test_non_pcg64_generator_is_refused(local_ray):
    model = QuantizedModel()
    with pytest.raises(ValueError, match="PCG64"):
        RayPoolScorer().query(st.entropy_sampling, model, np.zeros((10, 4)), 2,
                              random_state=np.random.Generator(np.random.MT19937(0)))


def test_pcb_and_featdist_same_as_in_process(local_ray, fitted):
    clf, X_lab, y_lab, pool = fitted
    scorer = RayPoolScorer(block_size=64)
    q1 = st.class_balanced(st.entropy_sampling, gamma=0.2, random_state=0)
    q2 = st.class_balanced(st.entropy_sampling, gamma=0.2, random_state=0)
    got = scorer.query(q1, clf, pool, 15, y_labeled=y_lab)
    np.testing.assert_array_equal(got[0], q2(clf, pool, 15, y_labeled=y_lab)[0])
    got = scorer.query(st.featdist_sampling, clf, pool, 10, random_state=1,
                       X_labeled=X_lab, y_labeled=y_lab)
    want = st.featdist_sampling(clf, pool, 10, random_state=1, X_labeled=X_lab, y_labeled=y_lab)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1])


def test_feature_strategies_gathered_are_exact(local_ray, fitted):
    clf, X_lab, _, pool = fitted
    scorer = RayPoolScorer(block_size=64)
    got = scorer.query(st.coreset_sampling, clf, pool, 8, random_state=2, X_labeled=X_lab)
    want = st.coreset_sampling(clf, pool, 8, random_state=2, X_labeled=X_lab)
    np.testing.assert_array_equal(got[0], want[0])
    got = scorer.query(st.badge_sampling, clf, pool, 8, random_state=2)
    np.testing.assert_array_equal(got[0], st.badge_sampling(clf, pool, 8, random_state=2)[0])


def test_coreset_shard_then_merge(local_ray, fitted):
    """Above exact_max_rows: per-block k-centre, then k-centre over the candidates."""
    clf, X_lab, _, pool = fitted
    k = 6
    one = RayPoolScorer(block_size=len(pool), exact_max_rows=0)
    got = one.query(st.coreset_sampling, clf, pool, k, random_state=0, X_labeled=X_lab)
    want = st.coreset_sampling(clf, pool, k, random_state=0, X_labeled=X_lab)
    assert set(got[0]) == set(want[0])  # one shard: the in-process selection
    sharded = RayPoolScorer(block_size=64, exact_max_rows=0)
    got = sharded.query(st.coreset_sampling, clf, pool, k, random_state=0, X_labeled=X_lab)
    # the documented algorithm, run in-process on the same blocks
    feats, lab = clf.embed(pool), clf.embed(X_lab)
    cand = []
    for s, e in plan_blocks(len(pool), 32, 64):
        idx, _ = st.coreset_sampling(clf, pool[s:e], min(k, e - s), X_labeled=X_lab)
        cand.extend(s + idx)
    cand = np.array(cand)
    pick, _ = st.coreset_sampling(clf, pool[cand], k, X_labeled=X_lab)
    assert set(got[0]) == set(cand[pick])
    assert np.unique(got[0]).size == k

    def radius(sel):
        centres = np.concatenate([lab, feats[sel]])
        return np.sqrt(_pool.min_sq_dist(feats, centres)).max()

    # greedy on the merged candidates stays within 3x of in-process greedy's radius here
    assert radius(got[0]) <= 3 * radius(want[0])
    with pytest.raises(ValueError, match="exact_max_rows"):
        sharded.query(st.class_balanced(st.coreset_sampling), clf, pool, k, X_labeled=X_lab)


def test_feature_store_encodes_each_image_once(local_ray, fitted, tmp_path):
    clf, X_lab, y_lab, pool = fitted
    store = ParquetFeatureStore(tmp_path / "features")
    scorer = RayPoolScorer(block_size=64, feature_store=store)
    idx, _ = scorer.query(st.entropy_sampling, clf, pool, 10, random_state=0)
    assert scorer.stats_["n_encoded"] == len(pool)
    np.testing.assert_array_equal(idx, st.entropy_sampling(clf, pool, 10, random_state=0)[0])
    rest = np.delete(pool, idx, axis=0)  # round 2: the pool without the picked images
    idx2, _ = scorer.query(st.entropy_sampling, clf, rest, 10, random_state=1)
    assert scorer.stats_["n_encoded"] == 0
    np.testing.assert_array_equal(idx2, st.entropy_sampling(clf, rest, 10, random_state=1)[0])
    assert sum(store.n_rows(p.name) for p in store.root.iterdir()) == len(pool)
    lora = CLIPAdapterClassifier(**TINY, adapter="lora", max_epochs=0, classes=[0, 1]).fit(
        X_lab, None
    )
    with pytest.raises(ValueError, match="frozen image tower"):
        scorer.query(st.entropy_sampling, lora, pool, 2)


def test_score_gathers_probabilities_and_features_only_when_asked(local_ray, fitted,
                                                                   tmp_path):
    clf, _, _, pool = fitted
    scorer = RayPoolScorer(block_size=64, feature_store=tmp_path / "features")
    seen = []
    proba, feats = scorer.score(clf, pool, progress=seen.append)
    assert feats is None and proba.shape == (len(pool), len(clf.classes_))
    np.testing.assert_allclose(proba, clf.predict_proba(pool), rtol=1e-6, atol=1e-9)
    assert seen == sorted(seen) and seen[-1] == len(pool) and len(seen) == 6  # per block
    # probabilities only: 8 bytes per class and row, plus the row index and the count
    assert scorer.stats_["bytes_returned"] == len(pool) * (8 * len(clf.classes_) + 8 + 8)
    proba2, feats = scorer.score(clf, pool, features=True)
    assert scorer.stats_["n_encoded"] == 0  # the store's features, from the first call
    assert feats.dtype == np.float32 and feats.shape[0] == len(pool)
    np.testing.assert_allclose(feats, clf.embed(pool), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba2, proba, rtol=1e-6, atol=1e-9)


def test_killed_actor_does_not_change_the_result(local_ray, fitted, tmp_path):
    clf, _, _, pool = fitted
    marker = tmp_path / "killed"
    scorer = RayPoolScorer(block_size=64)
    got = scorer.query(st.entropy_sampling, KillOnce(clf, str(marker)), pool, 10, random_state=4)
    assert marker.exists()  # an actor process was killed on its first block
    np.testing.assert_array_equal(got[0], st.entropy_sampling(clf, pool, 10, random_state=4)[0])


def test_modal_learner_query(local_ray, fitted):
    from modAL.models import ActiveLearner

    clf, X_lab, y_lab, pool = fitted
    query = distributed_strategy(st.margin_sampling, block_size=64)
    learner = ActiveLearner(estimator=clf, query_strategy=query)
    got = learner.query(pool, n_instances=5, random_state=0)
    want = st.margin_sampling(clf, pool, 5, random_state=0)
    np.testing.assert_array_equal(np.asarray(got[0]), want[0])
    assert query.scorer.stats_["n_blocks"] == 6
    with pytest.raises(ValueError, match="not both"):
        distributed_strategy(st.margin_sampling, scorer=query.scorer, block_size=2)


def test_cli_run_with_ray_gives_the_same_results(local_ray, tmp_path):
    import pandas as pd

    from skpeal import cli
    from skpeal.datasets import load_fashion_mnist

    try:
        load_fashion_mnist(n_train=10, n_test=10)
    except (FileNotFoundError, OSError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    args = ["run", "--data", "fashion-mnist", "--model", "skpeal-tiny", "--strategies",
            "entropy", "margin", "--rounds", "2", "--pool-size", "200", "--test-size", "50",
            "--epochs", "1", "--n-ctx", "4", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "ray"), "--ray", "local"]) == 0
    a, b = (pd.read_csv(tmp_path / d / "results.csv") for d in ("plain", "ray"))
    timing = [c for c in a.columns if c.endswith("_time")]
    assert timing and len(a) == 4
    pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing))
