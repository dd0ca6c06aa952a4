"""Tests of skpeal.strategies.uherding: Uncertainty Herding (Bae et al., ICLR 2025)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression

from skpeal.strategies import get_strategy, uherding_sampling
from skpeal.strategies import lowbudget as lb
from skpeal.strategies.uherding import uherding_delta, uherding_select, uherding_uncertainty

SETTINGS = settings(max_examples=20, deadline=None)


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(260, centers=5, n_features=6, random_state=0, cluster_std=2.5)
    return LogisticRegression(max_iter=500).fit(X[:60], y[:60]), X, y


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ properties
@st.composite
def problems(draw):
    n = draw(st.integers(8, 40))
    d = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    n_lab = draw(st.integers(0, 5))
    k = draw(st.integers(1, n - n_lab))
    u = rng.random(n - n_lab) if draw(st.booleans()) else None
    return X[n_lab:], (X[:n_lab] if n_lab else None), k, u, seed


@SETTINGS
@given(problems())
def test_select_properties(prob):
    pool, labelled, k, u, seed = prob
    idx, s = uherding_select(pool, labelled, k, uncertainty=u, random_state=seed)
    assert idx.dtype == np.intp and idx.shape == (k,) and s.shape == (k,)
    assert np.unique(idx).size == k  # distinct
    assert idx.min() >= 0 and idx.max() < len(pool)  # pool rows only, never a labelled one
    assert np.isfinite(s).all() and (s >= 0).all()
    assert np.all(np.diff(s) <= 1e-12)  # a weighted coverage is submodular: gains shrink
    again, s2 = uherding_select(pool, labelled, k, uncertainty=u, random_state=seed)
    np.testing.assert_array_equal(idx, again)
    np.testing.assert_array_equal(s, s2)


@SETTINGS
@given(problems(), st.floats(0.3, 3.0))
def test_uniform_uncertainty_is_maxherding(prob, delta):
    pool, labelled, k, _, seed = prob
    ours, s_ours = uherding_select(pool, labelled, k, delta=delta, random_state=seed)
    ref, s_ref = lb.maxherding_select(pool, labelled, k, gamma=1 / delta**2,
                                      random_state=seed)
    # the same greedy gains (MaxHerding's are means over the pool only): the picks agree
    # up to near-ties, which the two summation orders may break differently
    scale = len(pool) / (len(pool) + (0 if labelled is None else len(labelled)))
    np.testing.assert_allclose(s_ours, s_ref * scale, rtol=1e-9, atol=1e-12)
    assert ours[0] == ref[0] or np.isclose(s_ours[0], s_ref[0] * scale)


@SETTINGS
@given(st.integers(0, 2**16), st.integers(2, 6), st.floats(0.05, 20.0))
def test_uncertainty_bounds(seed, n_classes, temperature):
    rng = np.random.default_rng(seed)
    proba = _softmax(rng.normal(scale=3, size=(30, n_classes)))
    for measure, top in (("margin", 1.0), ("conf", 1 - 1 / n_classes),
                         ("entropy", np.log(n_classes))):
        u = uherding_uncertainty(proba, measure=measure, temperature=temperature)
        assert u.shape == (30,) and np.isfinite(u).all()
        assert (u >= -1e-12).all() and (u <= top + 1e-9).all()


def test_temperature_is_a_logit_scale():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2, size=(40, 4))
    proba = _softmax(logits)
    scaled = _softmax(logits / 2.5)
    top = -np.sort(-scaled, axis=1)
    np.testing.assert_allclose(uherding_uncertainty(proba, temperature=2.5),
                               1 - (top[:, 0] - top[:, 1]))
    # a hot temperature flattens the weights towards MaxHerding's uniform ones
    hot = uherding_uncertainty(proba, temperature=1e4)
    assert np.ptp(hot) < 1e-3 and np.ptp(uherding_uncertainty(proba)) > 0.3


def test_delta_is_smallest_labelled_distance():
    L = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [0.0, 1.0]])  # a duplicate: ignored
    assert uherding_delta(L) == pytest.approx(1.0 * np.sqrt(1.0))
    assert uherding_delta(L[1:3]) == pytest.approx(np.sqrt(9 + 9))
    assert uherding_delta(None) == 1.0 and uherding_delta(L[:1]) == 1.0


# ------------------------------------------------------------------ references
def _blobs(n=200, seed=1):
    X, y = make_blobs(n, centers=4, n_features=5, random_state=seed, cluster_std=2.0)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


@pytest.mark.parametrize("n_lab", [0, 6])
@pytest.mark.parametrize("n", [3, 8])
def test_uniform_uncertainty_matches_skactiveml_maxherding(n_lab, n):
    from skactiveml.pool import MaxHerding

    X, y = _blobs()
    yy = y.astype(float)
    yy[n_lab:] = np.nan
    delta = 0.7
    ref = MaxHerding(random_state=0, metric_dict={"gamma": 1 / delta**2}).query(
        X, yy, batch_size=n)
    ours, _ = uherding_select(X[n_lab:], X[:n_lab] if n_lab else None, n,
                              uncertainty=np.ones(len(X) - n_lab), delta=delta)
    np.testing.assert_array_equal(ref, ours + n_lab)


def _authors_uherding(features, n_lab, logits, temperature, budget):
    """A NumPy transcription of ``UHerding.select_samples`` (wkgong/uncertainty_herding,
    ``deep-al/pycls/al/uherding.py``) with margin uncertainty, temperature scaling and the
    adaptive delta; the relevant set is the labelled rows then the unlabelled ones."""
    feats = features / np.linalg.norm(features, axis=-1, keepdims=True)

    def cdist(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    lfeat = feats[:n_lab]
    dist = cdist(lfeat, lfeat)
    dist[np.arange(n_lab), np.arange(n_lab)] = 0
    tril = np.tril(dist, -1)
    delta = tril[tril > 0].min()
    d_all = cdist(feats, feats)
    d_all[np.arange(len(feats)), np.arange(len(feats))] = 0
    kernel_all = np.exp(-1.0 * (d_all / delta) ** 2)
    kernel_la = np.exp(-1.0 * (cdist(lfeat, feats) / delta) ** 2)
    p = _softmax(logits / temperature)
    top = -np.sort(-p, axis=1)
    unc = 1.0 - (top[:, 0] - top[:, 1])
    unc[:n_lab] = 0.0
    unc = unc.reshape(1, -1)
    inner_l = list(range(n_lab))
    max_embedding = kernel_la.max(axis=0, keepdims=True)
    gains = []
    for _ in range(budget):
        upd = kernel_all - max_embedding
        upd[upd < 0] = 0.0
        mean_max = (unc * upd).mean(axis=-1)
        mean_max[inner_l] = -np.inf
        sel = int(np.argmax(mean_max))
        gains.append(mean_max[sel])
        inner_l.append(sel)
        max_embedding = upd[sel][None, :] + max_embedding
    return np.asarray(inner_l[n_lab:]) - n_lab, np.asarray(gains)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_a_transcription_of_the_authors_loop(seed):
    rng = np.random.default_rng(seed)
    X, y = make_blobs(120, centers=3, n_features=8, random_state=seed, cluster_std=3.0)
    logits = rng.normal(scale=2.0, size=(120, 3)) + 2 * np.eye(3)[y]
    n_lab, T = 9, 1.7
    want, want_gain = _authors_uherding(X, n_lab, logits, T, 7)
    u = uherding_uncertainty(_softmax(logits[n_lab:]), temperature=T)
    got, got_gain = uherding_select(X[n_lab:], X[:n_lab], 7, uncertainty=u, random_state=0)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_gain, want_gain, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ query function
def test_query_function(fitted):
    clf, X, y = fitted
    pool = X[60:]
    idx, scores = uherding_sampling(clf, pool, 7, random_state=0, X_labeled=X[:20],
                                    y_labeled=y[:20])
    assert idx.dtype == np.intp and np.unique(idx).size == 7 and scores.shape == (7,)
    # the classifier's margins weight the coverage, the labelled rows set delta and m
    u = uherding_uncertainty(clf.predict_proba(pool))
    want, _ = uherding_select(pool, X[:20], 7, uncertainty=u, random_state=0)
    np.testing.assert_array_equal(idx, want)
    flat, _ = uherding_select(pool, X[:20], 7, random_state=0)
    assert not np.array_equal(idx, flat)  # the weights matter here
    again, _ = uherding_sampling(clf, pool, 7, random_state=0, X_labeled=X[:20],
                                 y_labeled=y[:20])
    np.testing.assert_array_equal(idx, again)
    # before the first label the weights are uniform: MaxHerding with delta = 1
    cold, _ = uherding_sampling(clf, pool, 5, random_state=1)
    ref, _ = lb.maxherding_sampling(clf, pool, 5, random_state=1, gamma=1.0)
    np.testing.assert_array_equal(cold, ref)
    record = get_strategy("uherding")
    assert record.query is uherding_sampling and record.pcb is False
    assert not record.needs_labels and record.uses_features


def test_modal_learner_drives_uherding(fitted):
    from modAL.models import ActiveLearner

    _, X, y = fitted
    learner = ActiveLearner(estimator=LogisticRegression(max_iter=300),
                            query_strategy=uherding_sampling, X_training=X[:20],
                            y_training=y[:20])
    idx, _ = learner.query(X[20:], n_instances=4)
    want, _ = uherding_sampling(learner.estimator, X[20:], 4, X_labeled=X[:20],
                                y_labeled=y[:20])
    assert np.unique(idx).size == 4
    np.testing.assert_array_equal(np.sort(idx), np.sort(want))


@pytest.mark.parametrize("kw, msg", [
    (dict(measure="variance"), "measure"),
    (dict(temperature=0.0), "temperature"),
    (dict(delta=-1.0), "delta"),
])
def test_bad_parameters_named(fitted, kw, msg):
    clf, X, y = fitted
    with pytest.raises(ValueError, match=msg):
        uherding_sampling(clf, X[60:], 3, X_labeled=X[:10], y_labeled=y[:10], **kw)
    with pytest.raises(ValueError, match=msg.split("=")[0]):
        uherding_sampling(clf, X[60:], 3, **kw)  # also before the first label


def test_bad_uncertainty_refused():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="uncertainty"):
        uherding_select(X, None, 2, uncertainty=np.ones(9))
    with pytest.raises(ValueError, match="uncertainty"):
        uherding_select(X, None, 2, uncertainty=-np.ones(10))


# ------------------------------------------------------------ in the product's loops
def test_uherding_runs_in_skpeal_run(tmp_path):
    from sklearn.utils import Bunch

    from skpeal.experiment import ExperimentConfig, run_experiment
    from skpeal.experiment.runner import make_loop

    cfg = ExperimentConfig(data="digits", model="skpeal-tiny", strategies=["uherding"],
                           rounds=2, seeds=[0], pool_size=150, test_size=60,
                           init="zero-shot", estimator_params=dict(n_ctx=2, max_epochs=1))
    df = run_experiment(cfg, tmp_path, progress=False)
    assert set(df.strategy) == {"uherding"}
    assert df.n_labels.max() == 20
    loop = make_loop(cfg, Bunch(classnames=[str(i) for i in range(10)]), "uherding", 0)
    assert loop.query_function() is uherding_sampling  # never PCB-wrapped


def test_labelling_loop_runs_uherding_in_one_feature_pass():
    from skpeal.labeling.loop import ActiveLearningLoop

    class WithFeatures:  # a fitted stand-in: given probabilities and features, passes counted
        def __init__(self, proba, feats):
            self.proba, self.feats = proba, feats
            self.classes_ = np.arange(proba.shape[1])
            self.calls = 0

        def predict_proba(self, X):
            raise AssertionError("uherding takes probabilities and features in one pass")

        def predict_proba_embed(self, X):
            self.calls += 1
            rows = np.asarray(X, dtype=int).ravel()
            return self.proba[rows], self.feats[rows]

    rng = np.random.default_rng(1)
    model = WithFeatures(rng.dirichlet(np.ones(3), size=60), rng.normal(size=(60, 5)))
    loop = ActiveLearningLoop(None, strategy=get_strategy("uherding").query)  # pcb: not wrapped
    assert loop.query_function() is uherding_sampling
    rows = loop.query(1, 4, np.arange(10, 60), model=model, X_pool=np.arange(60),
                      labelled=np.arange(10), y_labelled=np.arange(10) % 3)
    assert len(set(rows)) == 4 and set(rows) <= set(range(10, 60))
    u = uherding_uncertainty(model.proba[10:])
    want, _ = uherding_select(model.feats[10:], model.feats[:10], 4, uncertainty=u,
                              random_state=0)
    assert set(rows) == set(want + 10)
