"""The active-learning loop: one round logic for the labelling session and ``skpeal run``."""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import Bunch

from skpeal import strategies as st
from skpeal._validation import derive_seed
from skpeal.labeling import LabelingSession, collect_images
from skpeal.labeling.loop import ActiveLearningLoop, PoolScores

from .conftest import TINY_EST, make_images

NAMES = ["blue", "green", "red"]  # sorted: both sides order the classes the same way


class Fixed:
    """A fitted stand-in classifier with given probabilities and features."""

    def __init__(self, proba, feats=None):
        self.proba, self.feats = np.asarray(proba, dtype=float), feats
        self.classes_ = np.arange(self.proba.shape[1])
        self.calls = 0

    def predict_proba(self, X):
        self.calls += 1
        return self.proba[np.asarray(X, dtype=int).ravel()]


@pytest.mark.parametrize("init", ["zero-shot", "random", "pixels"])
def test_session_with_a_simulated_oracle_is_the_runner(tmp_path, init):
    """``skpeal run`` and a LabelingSession pick the same images and fit the same models."""
    from skpeal import CLIPAdapterClassifier
    from skpeal.experiment import ExperimentConfig, run_experiment

    truth = make_images(tmp_path / "pool", n=30)
    test_truth = make_images(tmp_path / "test", n=12, seed=1)
    paths = collect_images(tmp_path / "pool")
    y = np.array([NAMES.index(truth[p]) for p in paths])
    X_test = np.array(sorted(test_truth), dtype=object)
    y_test = np.array([NAMES.index(test_truth[p]) for p in X_test])
    data = Bunch(X_train=np.array(paths, dtype=object), y_train=y, X_test=X_test,
                 y_test=y_test, classnames=NAMES)
    params = dict(n_ctx=4, max_epochs=2)
    config = ExperimentConfig(data="colours", model="skpeal-tiny", strategies=[
        "calibrated-entropy"], rounds=3, budget=5, seeds=[0], init=init,
        estimator_params=params)
    results = run_experiment(config, tmp_path / "run", data=data, progress=False)
    selections = pd.read_json(tmp_path / "run" / "selections.json")

    est = CLIPAdapterClassifier(model="skpeal-tiny", calibration="balanced",
                                calibration_weight=1.0, **params)
    s = LabelingSession(tmp_path / "project", images=tmp_path / "pool", classes=NAMES,
                        estimator=est, batch_size=5, init=init, train_batch="estimator",
                        random_state=0, strategy="entropy")
    s.simulate(lambda image_id, path: truth[path], 3)
    by_round = {}
    for row in s.store.history():
        by_round.setdefault(row["round"], []).append(s._row[row["image_id"]])
    assert len(by_round) == 3
    for r in range(3):
        runner = results[results["round"] == r].iloc[0]
        picked = selections[selections["round"] == r].iloc[0].selected
        assert by_round[r] == list(picked), f"round {r}"
        # the runner's round-r model is the session's model of round r + 1
        model = s.loop.estimator_for(r + 1, 5 * (r + 1)).load_adapter(
            tmp_path / "project" / "models" / f"round-{r + 1}.safetensors")
        acc = float((model.predict_proba(X_test).argmax(1) == y_test).mean())
        assert acc == runner.accuracy
    s.close()


def test_random_first_batch_and_seeds():
    proba = np.tile([0.6, 0.3, 0.1], (40, 1))
    model = Fixed(proba)
    loop = ActiveLearningLoop(None, strategy=st.entropy_sampling, init="random", random_state=3)
    rows = loop.query(0, 5, np.arange(40), model=model, X_pool=np.arange(40))
    assert model.calls == 0  # a random first batch needs no model pass
    want = np.sort(np.random.default_rng(derive_seed("init", 3)).choice(40, 5, replace=False))
    np.testing.assert_array_equal(rows, want)
    # later rounds: the strategy, seeded by (random_state, round[, k])
    for k in (0, 2):
        got = loop.query(1, 5, np.arange(40), model=model, X_pool=np.arange(40), k=k)
        parts = ("query", 3, 1) + ((k,) if k else ())
        fn = st.class_balanced(st.entropy_sampling, 0.1)
        pos, _ = fn(PoolScores(model.classes_, proba), np.arange(40), 5,
                    random_state=derive_seed(*parts))
        np.testing.assert_array_equal(got, pos)


def test_query_scores_the_pool_once_and_only_the_remaining_rows_are_picked():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=50)
    model = Fixed(proba)
    loop = ActiveLearningLoop(None, balance="none")
    remaining = np.arange(0, 50, 2)
    rows = loop.query(1, 6, remaining, model=model, X_pool=np.arange(50))
    assert model.calls == 1
    assert set(rows) <= set(remaining)
    ent = st.entropy_scores(proba[remaining])
    assert set(rows) == set(remaining[np.argsort(-ent)[:6]])


class WithFeatures(Fixed):
    """A stand-in that also gives image features (counting its passes)."""

    embed_calls = 0

    def predict_proba_embed(self, X):
        self.embed_calls += 1
        rows = np.asarray(X, dtype=int).ravel()
        return self.proba[rows], self.feats[rows]


@pytest.mark.parametrize("strategy, passes", [(st.entropy_sampling, (1, 0)),
                                              (st.coreset_sampling, (0, 1)),
                                              (st.badge_sampling, (0, 1))])
def test_one_pass_per_query_and_features_only_when_asked(strategy, passes):
    rng = np.random.default_rng(1)
    model = WithFeatures(rng.dirichlet(np.ones(3), size=60), rng.normal(size=(60, 5)))
    loop = ActiveLearningLoop(None, strategy=strategy)  # through PCB
    rows = loop.query(1, 4, np.arange(10, 60), model=model, X_pool=np.arange(60),
                      labelled=np.arange(10), y_labelled=np.arange(10) % 3)
    assert len(set(rows)) == 4 and set(rows) <= set(range(10, 60))
    assert (model.calls, model.embed_calls) == passes  # uncertainty keeps no features


def test_feature_strategies_need_features():
    loop = ActiveLearningLoop(None, strategy=st.coreset_sampling, balance="none")
    with pytest.raises(ValueError, match="no image features"):
        loop.query(1, 2, np.arange(3, 10), model=Fixed(np.full((10, 2), 0.5)),
                   X_pool=np.arange(10), labelled=[0, 1], y_labelled=[0, 1])


@pytest.mark.parametrize("kw, match", [(dict(init="x"), "init"), (dict(balance=1), "balance"),
                                       (dict(train_batch=8), "train_batch"),
                                       (dict(gamma=0.0), "gamma"),
                                       (dict(strategy="entropy"), "query function")])
def test_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        ActiveLearningLoop(None, **kw)


def test_rounds_resume_to_the_same_picks(tmp_path):
    """Stopping after round 1 and resuming (model refitted) continues identically."""
    from skpeal import CLIPAdapterClassifier

    truth = make_images(tmp_path / "pool", n=24)
    paths = collect_images(tmp_path / "pool")
    y = np.array([truth[p] for p in paths], dtype=object)
    loop = ActiveLearningLoop(CLIPAdapterClassifier(**TINY_EST), classes=NAMES, random_state=1)
    full = list(loop.rounds(paths, lambda rows: y[rows], 3, 4))
    first = full[1]
    resumed = list(loop.rounds(paths, lambda rows: y[rows], 3, 4, labelled=first.labelled,
                               y_labelled=first.y_labelled, start=2))
    np.testing.assert_array_equal(resumed[0].selected, full[2].selected)
    assert [len(r.labelled) for r in full] == [4, 8, 12]
    assert len(set(full[2].labelled)) == 12


def test_warm_start_from_the_zero_shot_model_trains(tmp_path):
    """The zero-shot model (max_epochs=0) is the start, not the recipe, of round 1."""
    from skpeal import CLIPAdapterClassifier

    truth = make_images(tmp_path / "pool", n=12)
    paths = collect_images(tmp_path / "pool")
    y = np.array([truth[p] for p in paths], dtype=object)
    loop = ActiveLearningLoop(CLIPAdapterClassifier(**TINY_EST), classes=NAMES,
                              warm_start=True)
    (step,) = loop.rounds(paths, lambda rows: y[rows], 1, 4)
    assert len(step.model.history_) == TINY_EST["max_epochs"]
    assert step.model.get_params()["warm_start"] is True
