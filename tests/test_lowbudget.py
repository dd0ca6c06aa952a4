"""Tests of skpeal.strategies.lowbudget: selectors, query functions, scikit-activeml."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression

from skpeal import strategies as S
from skpeal.strategies import get_strategy
from skpeal.strategies import lowbudget as lb

SETTINGS = settings(max_examples=15, deadline=None)
QUERIES = [lb.typiclust_sampling, lb.probcover_sampling, lb.maxherding_sampling,
           lb.dropquery_sampling, lb.classguided_sampling, lb.auto_sampling]


def _blobs(n=300, centers=4, d=5, std=2.0, seed=1):
    X, y = make_blobs(n, centers=centers, n_features=d, random_state=seed, cluster_std=std)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


@pytest.fixture(scope="module")
def fitted():
    X, y = make_blobs(260, centers=5, n_features=6, random_state=0)
    return LogisticRegression(max_iter=500).fit(X[:60], y[:60]), X, y


# ------------------------------------------------------------------ properties
@st.composite
def problems(draw):
    n = draw(st.integers(12, 50))
    d = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    X = np.random.default_rng(seed).normal(size=(n, d))
    n_lab = draw(st.integers(0, 5))
    k = draw(st.integers(1, min(6, n - n_lab)))
    return X, np.arange(n_lab), k, seed


def _check_picks(idx, scores, k, n, forbidden=()):
    assert idx.dtype == np.intp and idx.shape == (k,) and scores.shape == (k,)
    assert np.unique(idx).size == k
    assert idx.min() >= 0 and idx.max() < n
    assert not np.isin(idx, forbidden).any()
    assert np.isfinite(scores).all()


@SETTINGS
@given(problems())
def test_typiclust_select_properties(prob):
    X, lab, k, seed = prob
    idx, s = lb.typiclust_select(X, lab, k, random_state=seed)
    _check_picks(idx, s, k, len(X), lab)
    assert (s > 0).all()
    np.testing.assert_array_equal(idx, lb.typiclust_select(X, lab, k, random_state=seed)[0])


@SETTINGS
@given(problems(), st.floats(0.05, 3.0))
def test_probcover_select_properties(prob, delta):
    X, lab, k, seed = prob
    idx, s = lb.probcover_select(X, lab, k, delta=delta, random_state=seed)
    _check_picks(idx, s, k, len(X), lab)
    assert (s >= 0).all() and np.all(np.diff(s) <= 0)  # greedy gains never increase
    np.testing.assert_array_equal(idx, lb.probcover_select(X, lab, k, delta=delta,
                                                           random_state=seed)[0])


@SETTINGS
@given(problems())
def test_maxherding_select_properties(prob):
    X, lab, k, seed = prob
    pool, labelled = X[len(lab):], (X[lab] if len(lab) else None)
    k = min(k, len(pool))
    idx, s = lb.maxherding_select(pool, labelled, k, random_state=seed)
    _check_picks(idx, s, k, len(pool))
    assert (s >= 0).all() and np.all(np.diff(s) <= 1e-12)  # submodular: gains shrink


@SETTINGS
@given(problems())
def test_dropquery_select_properties(prob):
    X, _, k, seed = prob
    W = np.random.default_rng(seed).normal(size=(X.shape[1], 3))
    idx, s = lb.dropquery_select(X, lambda F: (F @ W).argmax(1), k, random_state=seed)
    _check_picks(idx, s, k, len(X))
    assert ((s >= 0) & (s <= 1)).all()


@SETTINGS
@given(problems(), st.integers(2, 5))
def test_classguided_select_properties(prob, n_classes):
    X, _, k, seed = prob
    logits = np.random.default_rng(seed).normal(size=(len(X), n_classes)) * 3
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    idx, s = lb.classguided_select(X, proba, k, random_state=seed)
    _check_picks(idx, s, k, len(X))
    # balanced over the predicted classes: counts differ by at most one where rows allow
    pred = proba.argmax(1)
    got = np.bincount(pred[idx], minlength=n_classes)
    full = np.bincount(pred, minlength=n_classes)
    short = got < full
    if short.any():
        assert got.max() - got[short].min() <= 1


def test_classguided_fills_rarest_labelled_classes_first():
    X, y = _blobs(200, centers=3)
    proba = np.eye(3)[y] * 0.9 + 0.1 / 3
    idx, _ = lb.classguided_select(X, proba, 2, counts=[5, 0, 0], random_state=0)
    assert set(y[idx]) == {1, 2}


# ------------------------------------------------------- agreement with scikit-activeml
skactiveml = pytest.importorskip("skactiveml")


def _y_missing(y, lab):
    yy = np.full(len(y), np.nan)
    yy[lab] = y[lab]
    return yy


@pytest.mark.parametrize("n", [3, 8])
def test_typiclust_matches_skactiveml(n):
    """Same clusters (same KMeans seed); picks differ only where cluster sizes tie."""
    from skactiveml.pool import TypiClust
    from sklearn.cluster import KMeans

    X, y = _blobs()
    lab = np.arange(6)
    ref = TypiClust(random_state=0, k=5).query(X, _y_missing(y, lab), batch_size=n)
    ours, _ = lb.typiclust_select(X, lab, n, k=5, random_state=0)
    cl = KMeans(n_clusters=6 + n, random_state=0).fit_predict(X)
    sizes = np.bincount(cl)
    for a, b in zip(ref, ours):
        # the same pick, or the most typical row of another uncovered cluster of equal size
        assert a == b or sizes[cl[a]] == sizes[cl[b]]
    assert (np.asarray(ref) == ours).sum() >= n - 2


@pytest.mark.parametrize("n", [3, 6])
def test_probcover_matches_skactiveml(n):
    """Same radius; the same coverage gain at every step (ties broken differently)."""
    from skactiveml.pool import ProbCover

    X, y = _blobs()
    lab = np.arange(6)
    pc = ProbCover(random_state=0, n_classes=4)
    _, util = pc.query(X, _y_missing(y, lab), batch_size=n, return_utilities=True)
    delta = lb.probcover_radius(X, 4, random_state=0)
    assert delta == pytest.approx(pc.delta_max_)
    _, gains = lb.probcover_select(X, lab, n, delta=delta, random_state=0)
    assert gains[0] == np.nanmax(util[0])


def test_probcover_gains_match_skactiveml_on_separated_blobs():
    from skactiveml.pool import ProbCover

    X, y = make_blobs(120, centers=[[0, 0], [9, 0], [0, 9]], cluster_std=0.3, random_state=0)
    X = X / 10
    lab = np.array([0])
    pc = ProbCover(random_state=0, n_classes=3, deltas=[0.2])
    _, util = pc.query(X, _y_missing(y, lab), batch_size=3, return_utilities=True)
    _, gains = lb.probcover_select(X, lab, 3, delta=0.2, random_state=0)
    np.testing.assert_array_equal(gains, np.nanmax(util, axis=1))


@pytest.mark.parametrize("n", [3, 8])
def test_maxherding_matches_skactiveml(n):
    from skactiveml.pool import MaxHerding

    X, y = _blobs()
    lab = np.arange(6)
    gamma = lb.median_gamma(X[6:])
    ref = MaxHerding(random_state=0, metric_dict={"gamma": gamma}).query(
        X, _y_missing(y, lab), batch_size=n)
    ours, _ = lb.maxherding_select(X[6:], X[:6], n, gamma=gamma, random_state=0)
    np.testing.assert_array_equal(ref, ours + 6)


def test_dropquery_agrees_with_skactiveml():
    """The same dropout masks, disagreement and candidates; picks nearest the centroids.

    scikit-activeml draws its masks from ``RandomState(seed)`` with
    ``seed = RandomState(random_state).randint(1, 2**31) * (n_unlabelled + 1) % 2**31``;
    given that seed we draw the same masks, so the candidate sets are identical. k-means
    then runs on the candidates in another row order (scikit-activeml: by disagreement,
    ours: by index), and k-means++ seeding depends on the order, so the centroids (and so
    the picks) may differ: each of our picks is checked to be the candidate nearest one
    of our centroids.
    """
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import DropQuery
    from sklearn.cluster import KMeans

    X, y = make_blobs(300, centers=[[0, 0], [4, 0], [0, 4], [4, 4]], cluster_std=1.5,
                      random_state=2)
    yy = _y_missing(y, np.arange(40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SklearnClassifier(LogisticRegression(), classes=np.unique(y),
                                random_state=0).fit(X, yy)
        seed = np.random.RandomState(0).randint(1, 2**31) * (260 + 1) % 2**31
        _, util = DropQuery(random_state=0, cluster_algo_dict={"random_state": seed}).query(
            X, yy, clf, batch_size=4, return_utilities=True)
    ref_cand = set(np.flatnonzero(np.isfinite(util[0])))
    rate = lb.dropout_disagreement(X[40:], clf.predict, random_state=seed)
    assert set(np.flatnonzero(rate > 0.5) + 40) == ref_cand
    idx, _ = lb.dropquery_select(X[40:], clf.predict, 4, random_state=seed)
    cand = np.sort(np.flatnonzero(rate > 0.5))
    dist = KMeans(n_clusters=4, random_state=seed).fit_transform(X[40:][cand])
    assert set(idx) == set(cand[dist.argmin(axis=0)])


# ------------------------------------------------------------------ query functions
@pytest.mark.parametrize("query", QUERIES)
def test_query_functions_modal_signature(query, fitted):
    clf, X, y = fitted
    pool = X[60:]
    idx, scores = query(clf, pool, 7, random_state=0, X_labeled=X[:5], y_labeled=y[:5])
    _check_picks(np.asarray(idx), np.asarray(scores), 7, len(pool))
    again, _ = query(clf, pool, 7, random_state=0, X_labeled=X[:5], y_labeled=y[:5])
    np.testing.assert_array_equal(idx, again)
    cold, _ = query(clf, pool, 5, random_state=1)  # no labelled set: a first batch
    assert np.unique(cold).size == 5
    record = get_strategy(query)
    assert record.pcb is False and not record.needs_labels  # never PCB-wrapped; cold start


def test_linear_head_recovers_logistic_regression(fitted):
    clf, X, _ = fitted
    W, b = lb.linear_head(X, clf.predict_proba(X))
    np.testing.assert_array_equal((X @ W + b).argmax(1), clf.predict(X))


def test_auto_switches_to_margin_with_pcb(fitted):
    clf, X, y = fitted
    pool = X[60:]
    few = lb.auto_sampling(clf, pool, 5, random_state=0, X_labeled=X[:5], y_labeled=y[:5])
    cg = lb.dropquery_sampling(clf, pool, 5, random_state=0, X_labeled=X[:5],
                               y_labeled=y[:5])
    np.testing.assert_array_equal(few[0], cg[0])
    many = lb.auto_sampling(clf, pool, 5, random_state=0, X_labeled=X[:60], y_labeled=y[:60])
    ref = S.class_balanced(S.margin_sampling, 0.1)(clf, pool, 5, random_state=0,
                                                  X_labeled=X[:60], y_labeled=y[:60])
    np.testing.assert_array_equal(many[0], ref[0])


def test_modal_learner_drives_typiclust(fitted):
    from modAL.models import ActiveLearner

    clf, X, y = fitted
    learner = ActiveLearner(estimator=LogisticRegression(max_iter=300),
                            query_strategy=lb.typiclust_sampling, X_training=X[:20],
                            y_training=y[:20])
    idx, _ = learner.query(X[20:], n_instances=4)
    assert np.unique(idx).size == 4


@pytest.mark.parametrize("bad, msg", [
    (dict(n=0), "n_instances"),
    (dict(labeled=[999]), "labeled indices"),
])
def test_bad_inputs_named(bad, msg):
    X, _ = _blobs(30)
    kw = dict(labeled=[0], n=2) | bad
    with pytest.raises(ValueError, match=msg):
        lb.typiclust_select(X, kw["labeled"], kw["n"])


def test_nan_features_refused():
    X, _ = _blobs(30)
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lb.probcover_select(X, [], 2, delta=0.5)


# ------------------------------------------------------------ in the product's loops
def test_low_budget_strategies_run_in_skpeal_run(tmp_path):
    from skpeal.experiment import ExperimentConfig, run_experiment
    from skpeal.experiment.runner import make_loop

    names = ["typiclust", "probcover", "maxherding", "dropquery", "classguided", "auto"]
    cfg = ExperimentConfig(data="digits", model="skpeal-tiny", strategies=names, rounds=2,
                           seeds=[0], pool_size=150, test_size=60, init="zero-shot",
                           estimator_params=dict(n_ctx=2, max_epochs=1))
    df = run_experiment(cfg, tmp_path, progress=False)
    assert set(df.strategy) == set(names)
    assert (df.groupby("strategy").n_labels.max() == 20).all()
    # never wrapped in PCB by the loop, even with balance="pcb"
    from sklearn.utils import Bunch

    loop = make_loop(cfg, Bunch(classnames=[str(i) for i in range(10)]), "typiclust", 0)
    assert loop.query_function() is lb.typiclust_sampling


def test_cold_start_round0_is_class_guided():
    """Round 0 of classguided on the zero-shot model: balanced over its class-name guesses."""
    from skpeal.experiment import ExperimentConfig, load_data
    from skpeal.experiment.runner import make_loop

    cfg = ExperimentConfig(data="digits", model="skpeal-tiny", strategies=["classguided"],
                           rounds=1, seeds=[0], pool_size=150, test_size=60,
                           init="zero-shot", estimator_params=dict(n_ctx=2, max_epochs=1))
    data = load_data(cfg)
    loop = make_loop(cfg, data, "classguided", 0)
    zs = loop.zero_shot(data.X_train)
    rows = loop.query(0, 10, np.arange(len(data.y_train)), model=zs, X_pool=data.X_train)
    pred = zs.predict_proba(data.X_train).argmax(1)
    got = np.bincount(pred[rows], minlength=10)
    full = np.bincount(pred, minlength=10)
    assert got.sum() == 10 and np.unique(rows).size == 10
    short = got < full  # classes with rows left get picks within one of each other
    assert got.max() - got[short].min() <= 1


def test_dropquery_on_pool_scores_keeps_its_pick_for_the_same_inputs(monkeypatch):
    """DropQuery on PoolScores (a labelling round) computes a pick once per model, rows, size
    and seed; the kept pick is the pick; the scores still pickle (issue 23 item 11)."""
    import pickle
    import threading

    from skpeal._pool import PoolScores

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 8))
    proba = rng.dirichlet(np.ones(3), size=200)
    calls = []
    select = lb.dropquery_select
    monkeypatch.setattr(lb, "dropquery_select", lambda *a, **k: calls.append(1) or select(*a, **k))
    scores = PoolScores(np.array(["a", "b", "c"]), proba, feats)
    rows = np.arange(3, 200)
    first = lb.dropquery_sampling(scores, rows, 5, random_state=7)
    again = lb.dropquery_sampling(scores, rows.copy(), 5, random_state=7, X_labeled=[0, 1],
                                  y_labeled=["a", "b"])  # the labels do not matter to it
    assert len(calls) == 1
    fresh = lb.dropquery_sampling(PoolScores(scores.classes_, proba, feats), rows, 5,
                                  random_state=7)
    for a, b, c in zip(first, again, fresh):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    again[0][:] = -1  # a copy: the kept pick is not changed by its user
    np.testing.assert_array_equal(lb.dropquery_sampling(scores, rows, 5, random_state=7)[0],
                                  first[0])
    n = len(calls)
    lb.dropquery_sampling(scores, rows[1:], 5, random_state=7)  # other rows
    lb.dropquery_sampling(scores, rows, 4, random_state=7)  # another size
    lb.dropquery_sampling(scores, rows, 5, random_state=8)  # another seed
    lb.dropquery_sampling(scores, rows, 5, random_state=7, n_dropout=4)
    lb.dropquery_sampling(scores, list(rows), 5, random_state=7)  # not an index array
    assert len(calls) == n + 5
    assert pickle.loads(pickle.dumps(scores)).memo(("k",), lambda: (np.ones(1),))[0][0] == 1

    # two callers at once (a pick ahead and the pick): one computation, one answer
    calls.clear()
    other = PoolScores(scores.classes_, proba, feats)
    out = [None, None]

    def run(i):
        out[i] = lb.dropquery_sampling(other, rows, 5, random_state=7)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][0], first[0])


def test_pool_scores_memo_forgets_a_failed_computation():
    from skpeal._pool import PoolScores

    scores = PoolScores(np.array([0, 1]), np.full((3, 2), 0.5))

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        scores.memo(("k",), boom)
    assert scores.memo(("k",), lambda: (np.zeros(2),))[0].tolist() == [0, 0]


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.01, 0.99), seed=st.integers(0, 2**31 - 1),
       shape=st.tuples(st.integers(1, 30), st.integers(1, 9)))
def test_dropout_mask_draws_what_choice_draws(rate, seed, shape):
    from skpeal.strategies import _linalg

    want = np.random.RandomState(seed).choice([True, False], size=shape, p=[rate, 1 - rate])
    got = _linalg.dropout_mask(np.random.RandomState(seed), shape, rate)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rows", [50, 9, 5])  # over- and underdetermined
def test_least_squares_is_lstsq(rows):
    from skpeal.strategies import _linalg

    rng = np.random.default_rng(rows)
    A, Y = rng.normal(size=(rows, 8)), rng.normal(size=(rows, 3))
    want = np.linalg.lstsq(A, Y, rcond=None)[0]
    np.testing.assert_allclose(_linalg.least_squares(A, Y), want, rtol=1e-9, atol=1e-11)
    A[:, 1] = A[:, 2]  # rank deficient: lstsq's minimum-norm solution itself
    np.testing.assert_array_equal(_linalg.least_squares(A, Y),
                                  np.linalg.lstsq(A, Y, rcond=None)[0])
