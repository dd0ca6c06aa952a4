"""Tests of skpeal.strategies: score functions, query functions, PCB class balancing."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skpeal import strategies as S
from skpeal.strategies import (
    badge_sampling,
    check_proba,
    class_balanced,
    coreset_sampling,
    entropy_sampling,
    entropy_scores,
    featdist_sampling,
    least_confidence_sampling,
    least_confidence_scores,
    margin_sampling,
    margin_scores,
    random_sampling,
)

SETTINGS = settings(max_examples=40, deadline=None)
SCORES = [entropy_scores, margin_scores, least_confidence_scores]
UNCERTAINTY = [entropy_sampling, margin_sampling, least_confidence_sampling]
ALL_QUERIES = [random_sampling, *UNCERTAINTY, badge_sampling, coreset_sampling, featdist_sampling]


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@st.composite
def probas(draw, min_rows=1, max_rows=30, max_classes=8):
    """Probability arrays as softmax of drawn logits (as in baal's torch_hypothesis)."""
    n = draw(st.integers(min_rows, max_rows))
    c = draw(st.integers(2, max_classes))
    logits = draw(arrays(np.float64, (n, c), elements=st.floats(-15, 15)))
    return _softmax(logits)


class TableClassifier:
    """Pool rows are ids (``X[:, 0]``); ``predict_proba`` looks them up in a fixed table.

    Counts model passes so that the one-pass rule can be checked.
    """

    def __init__(self, proba, classes=None, features=None):
        self.proba = np.asarray(proba, dtype=float)
        self.classes_ = np.arange(self.proba.shape[1]) if classes is None else np.asarray(classes)
        self.features = features
        self.calls = 0

    def predict_proba(self, X):
        self.calls += 1
        return self.proba[np.asarray(X)[:, 0].astype(int)]


class FeatureClassifier:
    """X is the feature matrix itself; probabilities are ``softmax(X @ W)``."""

    def __init__(self, W):
        self.W = np.asarray(W, dtype=float)
        self.classes_ = np.arange(self.W.shape[1])

    def predict_proba(self, X):
        return _softmax(np.asarray(X, dtype=float) @ self.W)


class EmbedClassifier(FeatureClassifier):
    """Has ``predict_proba_embed`` (features = 2 * X) and counts every pass."""

    def __init__(self, W):
        super().__init__(W)
        self.passes = []

    def predict_proba(self, X):
        self.passes.append(("predict_proba", len(X)))
        return super().predict_proba(X)

    def embed(self, X):
        self.passes.append(("embed", len(X)))
        return 2.0 * np.asarray(X, dtype=float)

    def predict_proba_embed(self, X):
        self.passes.append(("predict_proba_embed", len(X)))
        return FeatureClassifier.predict_proba(self, X), 2.0 * np.asarray(X, dtype=float)


def _ids(n):
    return np.arange(n)[:, None]


def _labeled_kw(n_features=3, n_classes=3):
    rng = np.random.default_rng(0)
    return {"X_labeled": rng.normal(size=(6, n_features)), "y_labeled": np.arange(6) % n_classes}


# ------------------------------------------------------------------------- score functions
@SETTINGS
@given(probas(min_rows=0))
def test_scores_finite_and_within_bounds(p):
    c = p.shape[1]
    bounds = {
        entropy_scores: (0.0, math.log(c)),
        margin_scores: (0.0, 1.0),
        least_confidence_scores: (0.0, 1.0 - 1.0 / c),
    }
    for fn, (low, high) in bounds.items():
        s = fn(p)
        assert s.shape == (p.shape[0],) and s.dtype == np.float64
        assert np.all(np.isfinite(s))
        assert np.all(s >= low) and np.all(s <= high + 1e-12), fn.__name__


@SETTINGS
@given(probas(), st.randoms(use_true_random=False))
def test_scores_equivariant_under_pool_permutation(p, rnd):
    perm = np.array(rnd.sample(range(p.shape[0]), p.shape[0]))
    for fn in SCORES:
        np.testing.assert_array_equal(fn(p[perm]), fn(p)[perm])


@SETTINGS
@given(probas(), st.randoms(use_true_random=False))
def test_scores_invariant_under_class_permutation(p, rnd):
    perm = np.array(rnd.sample(range(p.shape[1]), p.shape[1]))
    for fn in SCORES:
        np.testing.assert_allclose(fn(p[:, perm]), fn(p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c", [2, 5, 10])
def test_scores_extremes(c):
    uniform = np.full((1, c), 1.0 / c)
    onehot = np.eye(c)[:1]
    assert entropy_scores(uniform)[0] == pytest.approx(math.log(c))
    assert margin_scores(uniform)[0] == pytest.approx(1.0)
    assert least_confidence_scores(uniform)[0] == pytest.approx(1 - 1 / c)
    for fn in SCORES:
        assert fn(onehot)[0] == pytest.approx(0.0)


def test_margin_prefers_small_margins():
    # Defect 3 of the reference code: margin must take the *most* uncertain rows.
    p = np.array([[0.99, 0.01], [0.5, 0.5], [0.7, 0.3]])
    assert margin_scores(p).argmax() == 1
    idx, _ = margin_sampling(TableClassifier(p), _ids(3), 1)
    assert idx.tolist() == [1]
    idx, _ = least_confidence_sampling(TableClassifier(p), _ids(3), 2)
    assert sorted(idx.tolist()) == [1, 2]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.ones((2, 2, 2)) / 2, "2-D"),
        (np.zeros((3, 0)), "at least one column"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, np.inf]]), "NaN or infinity"),
        (np.array([[0.5, 0.4]]), "sum to 1"),
        (np.array([[1.5, -0.5]]), r"\[0, 1\]"),
    ],
)
def test_score_functions_reject_bad_probabilities(bad, match):
    for fn in [check_proba, *SCORES]:
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_check_proba_tolerates_float32_rounding():
    p = _softmax(np.random.default_rng(0).normal(size=(100, 7))).astype(np.float32)
    out = check_proba(p)
    assert out.dtype == np.float64 and out.shape == (100, 7)


# ------------------------------------------------------------------------- query functions
@SETTINGS
@given(probas(min_rows=2), st.data())
def test_query_indices_unique_in_range_exact_and_reproducible(p, data):
    n_pool = p.shape[0]
    n = data.draw(st.integers(1, n_pool), label="n_instances")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    clf = FeatureClassifier(np.zeros((p.shape[1], p.shape[1])))
    # Features = the probability rows themselves; probabilities from FeatureClassifier.
    clf.predict_proba = lambda X: np.asarray(X)
    kw = {"X_labeled": p[:1], "y_labeled": np.array([0])}
    for fn in ALL_QUERIES:
        out = fn(clf, p, n, random_state=seed, **kw)
        assert isinstance(out, tuple) and len(out) == 2, fn.__name__
        idx, scores = out
        assert idx.dtype == np.intp and idx.shape == (n,)
        assert np.unique(idx).size == n
        assert idx.min() >= 0 and idx.max() < n_pool
        assert scores.shape == (n,) and np.all(np.isfinite(scores))
        idx2, scores2 = fn(clf, p, n, random_state=seed, **kw)
        np.testing.assert_array_equal(idx, idx2)
        np.testing.assert_array_equal(scores, scores2)


def _kth_gap(scores, n):
    s = np.sort(scores)[::-1]
    return math.inf if n == s.size else s[n - 1] - s[n]


@SETTINGS
@given(probas(min_rows=2), st.data())
def test_uncertainty_sampling_equivariant_under_pool_permutation(p, data):
    n = data.draw(st.integers(1, p.shape[0]))
    perm = np.array(data.draw(st.permutations(range(p.shape[0]))))
    for fn, score in zip(UNCERTAINTY, SCORES):
        assume(_kth_gap(score(p), n) > 1e-9)
        idx, _ = fn(TableClassifier(p), _ids(p.shape[0]), n, random_state=0)
        idx_p, _ = fn(TableClassifier(p[perm]), _ids(p.shape[0]), n, random_state=1)
        assert set(perm[idx_p].tolist()) == set(idx.tolist()), fn.__name__


@SETTINGS
@given(probas(min_rows=2), st.data())
def test_uncertainty_sampling_invariant_under_class_permutation(p, data):
    n = data.draw(st.integers(1, p.shape[0]))
    perm = np.array(data.draw(st.permutations(range(p.shape[1]))))
    for fn, score in zip(UNCERTAINTY, SCORES):
        assume(_kth_gap(score(p), n) > 1e-9)
        idx, s = fn(TableClassifier(p), _ids(p.shape[0]), n, random_state=0)
        clf = TableClassifier(p[:, perm], classes=np.arange(p.shape[1])[perm])
        idx_c, s_c = fn(clf, _ids(p.shape[0]), n, random_state=0)
        assert set(idx_c.tolist()) == set(idx.tolist()), fn.__name__
        np.testing.assert_allclose(np.sort(s_c), np.sort(s), atol=1e-12)


@SETTINGS
@given(probas(min_rows=2), st.data())
def test_entropy_sampling_returns_argmax_entropy_rows(p, data):
    n = data.draw(st.integers(1, p.shape[0]))
    clf = TableClassifier(p)
    idx, scores = entropy_sampling(clf, _ids(p.shape[0]), n, random_state=3)
    h = entropy_scores(p)
    rest = np.setdiff1d(np.arange(p.shape[0]), idx)
    np.testing.assert_array_equal(scores, h[idx])
    assert np.all(np.diff(scores) <= 0)  # most informative first
    if rest.size:
        assert h[idx].min() >= h[rest].max()
    assert clf.calls == 1  # one model pass


def test_ties_broken_by_seeded_generator_not_global_rng():
    p = np.full((50, 4), 0.25)  # every row ties
    clf = TableClassifier(p)
    state = np.random.get_state()  # noqa: NPY002 (checking the global RNG is untouched)
    picks = {tuple(entropy_sampling(clf, _ids(50), 5, random_state=s)[0]) for s in range(10)}
    assert len(picks) > 1  # ties really are broken at random ...
    assert tuple(entropy_sampling(clf, _ids(50), 5, random_state=4)[0]) == tuple(
        entropy_sampling(clf, _ids(50), 5, random_state=4)[0]
    )  # ... reproducibly
    X = np.random.default_rng(0).normal(size=(40, 3))
    fc = FeatureClassifier(np.ones((3, 3)))
    for fn in ALL_QUERIES:
        fn(fc, X, 4, **_labeled_kw())
    class_balanced(badge_sampling)(fc, X, 4, **_labeled_kw())
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_random_state_accepts_generator_and_rejects_garbage():
    X = np.random.default_rng(0).normal(size=(20, 3))
    a = random_sampling(None, X, 5, random_state=np.random.default_rng(7))[0]
    b = random_sampling(None, X, 5, random_state=7)[0]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="random_state"):
        random_sampling(None, X, 5, random_state="seed")


@pytest.mark.parametrize("fn", ALL_QUERIES)
@pytest.mark.parametrize(
    ("n_instances", "match"),
    [
        (0, r"\[1, 10\]"),
        (11, r"\[1, 10\]"),
        (-1, r"\[1, 10\]"),
        (2.5, "integer"),
        (True, "integer"),
    ],
)
def test_bad_n_instances(fn, n_instances, match):
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match=f"n_instances.*{match}"):
        fn(FeatureClassifier(np.ones((3, 3))), X, n_instances, **_labeled_kw())


@pytest.mark.parametrize("fn", [*ALL_QUERIES, class_balanced(entropy_sampling)])
def test_empty_pool(fn):
    with pytest.raises(ValueError, match="X_pool is empty"):
        fn(FeatureClassifier(np.ones((3, 3))), np.zeros((0, 3)), 1, **_labeled_kw())


@pytest.mark.parametrize("fn", [*UNCERTAINTY, badge_sampling])
@pytest.mark.parametrize(
    ("proba", "match"),
    [([[0.5, 0.2]] * 4, "sum to 1"), ([[np.nan, 1.0]] * 4, "NaN"), ([[1.0, 0.0]] * 3, "rows")],
)
def test_bad_classifier_probabilities(fn, proba, match):
    class Bad:
        classes_ = np.array([0, 1])

        def predict_proba(self, X):
            return np.array(proba)

    with pytest.raises(ValueError, match=match):
        fn(Bad(), np.zeros((4, 2)), 1)


@pytest.mark.parametrize("fn", [coreset_sampling, featdist_sampling])
def test_feature_strategies_need_labelled_data(fn):
    X = np.random.default_rng(0).normal(size=(10, 3))
    clf = FeatureClassifier(np.ones((3, 3)))
    with pytest.raises(ValueError, match="needs the labelled set: pass X_labeled="):
        fn(clf, X, 2)
    with pytest.raises(ValueError, match="needs the labelled set"):
        fn(clf, X, 2, X_labeled=X[:0], y_labeled=np.array([], dtype=int))


def test_labelled_set_mismatch_and_unknown_labels():
    X = np.random.default_rng(0).normal(size=(10, 3))
    clf = FeatureClassifier(np.ones((3, 3)))
    with pytest.raises(ValueError, match="X_labeled has 3 samples but y_labeled has 2"):
        featdist_sampling(clf, X, 2, X_labeled=X[:3], y_labeled=np.array([0, 1]))
    with pytest.raises(ValueError, match="labels not in classifier.classes_: 7"):
        featdist_sampling(clf, X, 2, X_labeled=X[:2], y_labeled=np.array([0, 7]))
    with pytest.raises(ValueError, match="labels not in classifier.classes_: 7"):
        class_balanced(entropy_sampling)(clf, X, 2, y_labeled=np.array([0, 7]))


def test_unfitted_classifier_without_classes():
    class NoClasses:
        def predict_proba(self, X):
            return np.full((len(X), 2), 0.5)

    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="no classes_"):
        class_balanced(entropy_sampling)(NoClasses(), X, 1)


# --------------------------------------------------------------------- feature strategies
def _clusters(rng, n_per=15, spread=0.05):
    """Four tight clusters at +-10 on two axes, shuffled; returns X, cluster ids."""
    centres = np.array([[10.0, 0, 0], [-10, 0, 0], [0, 10, 0], [0, -10, 0]])
    X = np.concatenate([c + spread * rng.normal(size=(n_per, 3)) for c in centres])
    ids = np.repeat(np.arange(4), n_per)
    order = rng.permutation(ids.size)
    return X[order], ids[order]


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_coreset_picks_one_point_per_far_cluster(seed):
    rng = np.random.default_rng(seed)
    X, ids = _clusters(rng)
    clf = FeatureClassifier(np.zeros((3, 3)))
    idx, scores = coreset_sampling(
        clf, X, 4, random_state=seed, X_labeled=np.zeros((1, 3)), y_labeled=[0]
    )
    assert sorted(ids[idx].tolist()) == [0, 1, 2, 3]
    assert scores.min() > 9.0  # each pick is ~10 from every earlier centre
    # The labelled set counts as covered: with a labelled point in cluster 0, four picks
    # cover clusters 1-3 first.
    idx, _ = coreset_sampling(
        clf, X, 3, random_state=seed, X_labeled=np.array([[10.0, 0, 0]]), y_labeled=[0]
    )
    assert sorted(ids[idx].tolist()) == [1, 2, 3]


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_badge_picks_distinct_far_apart_points(seed):
    rng = np.random.default_rng(seed)
    X, ids = _clusters(rng)
    clf = FeatureClassifier(np.zeros((3, 3)))  # uniform probabilities: gradients ~ features
    idx, scores = badge_sampling(clf, X, 4, random_state=seed)
    assert sorted(ids[idx].tolist()) == [0, 1, 2, 3]
    assert np.all(scores > 0)


def test_badge_handles_duplicate_points_and_one_hot_predictions():
    X = np.ones((12, 3))
    idx, scores = badge_sampling(FeatureClassifier(np.zeros((3, 2))), X, 5, random_state=0)
    assert np.unique(idx).size == 5
    # One-hot probabilities give all-zero gradient embeddings: still 5 distinct rows.
    p = np.eye(3)[np.arange(12) % 3]
    clf = TableClassifier(p)
    idx, scores = badge_sampling(clf, _ids(12), 5, random_state=0)
    assert np.unique(idx).size == 5 and np.all(scores == 0)


def test_badge_starts_at_the_largest_gradient_norm_then_samples_by_squared_distance():
    from skpeal.strategies._diversity import _badge_seeding

    # 1-d "embeddings" (one class coefficient 1, features = positions): first pick is the
    # largest |x|; the second is drawn with probability D^2 / sum D^2.
    x = np.array([0.0, 1.0, 2.0, 10.0])
    coef, feats = np.ones((4, 1)), x[:, None]
    sq = x**2
    firsts, seconds = set(), np.zeros(4)
    for seed in range(4000):
        idx = _badge_seeding(coef, feats, sq, 2, np.random.default_rng(seed))
        firsts.add(int(idx[0]))
        seconds[idx[1]] += 1
    assert firsts == {3}
    d2 = (x - 10.0) ** 2
    np.testing.assert_allclose(seconds / seconds.sum(), d2 / d2.sum(), atol=0.03)
    # against the full embedding matrix, on random probabilities and features
    rng = np.random.default_rng(0)
    p = _softmax(rng.normal(size=(30, 4)))
    f = rng.normal(size=(30, 5))
    a = -p
    a[np.arange(30), p.argmax(1)] += 1
    g = (a[:, :, None] * f[:, None, :]).reshape(30, -1)
    idx = _badge_seeding(a, f, (g**2).sum(1), 6, np.random.default_rng(1))
    assert idx[0] == np.argmax(np.linalg.norm(g, axis=1)) and np.unique(idx).size == 6
    # same seed, same picks
    np.testing.assert_array_equal(
        idx, _badge_seeding(a, f, (g**2).sum(1), 6, np.random.default_rng(1)))


def test_badge_gradient_embedding_matches_definition():
    # For one pool row, the gradient norm is ||f|| * ||onehot(yhat) - p||.
    W = np.array([[1.0, 0.0], [0.0, 0.5], [0.2, 0.1]])
    X = np.random.default_rng(1).normal(size=(7, 3))
    clf = FeatureClassifier(W)
    idx, scores = badge_sampling(clf, X, 7, random_state=0)
    p = clf.predict_proba(X)
    expected = np.linalg.norm(X, axis=1) * np.linalg.norm(np.eye(2)[p.argmax(1)] - p, axis=1)
    np.testing.assert_allclose(scores, expected[idx])


def test_featdist_scores_and_unlabelled_class():
    W = np.eye(3)  # predicted class = argmax feature
    clf = FeatureClassifier(W)
    X_lab = np.array([[2.0, 0, 0], [4.0, 0, 0], [0, 3.0, 0]])  # means: class0 (3,0,0), class1
    y_lab = np.array([0, 0, 1])
    X = np.array([[3.0, 0, 0], [9.0, 0, 0], [0, 3.0, 1.0], [0, 1.0, 5.0]])
    idx, scores = featdist_sampling(clf, X, 4, X_labeled=X_lab, y_labeled=y_lab)
    by_row = dict(zip(idx.tolist(), scores.tolist()))
    assert by_row[0] == pytest.approx(0.0)
    assert by_row[1] == pytest.approx(6.0)
    assert by_row[2] == pytest.approx(1.0)
    # Row 3 is predicted as class 2, which has no labelled sample: nearest labelled mean.
    # Distances to the means: class 0 sqrt(35), class 1 sqrt(29).
    assert by_row[3] == pytest.approx(math.sqrt(29))
    assert idx[0] == 1  # farthest first


def test_feature_source_predict_proba_embed_is_one_pass():
    clf = EmbedClassifier(np.ones((3, 3)))
    X = np.random.default_rng(0).normal(size=(30, 3))
    for fn in [badge_sampling, coreset_sampling, featdist_sampling]:
        clf.passes.clear()
        fn(clf, X, 3, **_labeled_kw())
        pool_passes = [name for name, n in clf.passes if n == 30]
        assert pool_passes == ["predict_proba_embed"], (fn.__name__, clf.passes)
    # Features really come from the estimator (2 * X), not from X: coreset distances double.
    d_embed = coreset_sampling(clf, X, 1, X_labeled=X[:1], y_labeled=[0])[1]
    d_flat = coreset_sampling(FeatureClassifier(np.ones((3, 3))), X, 1, X_labeled=X[:1])[1]
    assert d_embed[0] == pytest.approx(2 * d_flat[0])


def test_feature_source_embed_plus_predict_proba():
    class EmbedOnly(FeatureClassifier):
        def embed(self, X):
            return -np.asarray(X, dtype=float)

    X = np.random.default_rng(0).normal(size=(10, 3))
    idx, _ = coreset_sampling(EmbedOnly(np.ones((3, 3))), X, 2, X_labeled=X[:2])
    assert np.unique(idx).size == 2


def test_non_numeric_pool_without_embed_is_a_clear_error():
    clf = TableClassifier(np.full((3, 2), 0.5))
    clf.predict_proba = lambda X: np.full((len(X), 2), 0.5)
    with pytest.raises(ValueError, match="neither predict_proba_embed nor embed"):
        badge_sampling(clf, ["a.png", "b.png", "c.png"], 1)


# ---------------------------------------------------------------------------- class balancing
@pytest.mark.parametrize("gamma", [0, -0.1, 1.5, "0.1", None, True, float("nan")])
def test_class_balanced_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma must be a number in \\(0, 1\\]"):
        class_balanced(entropy_sampling, gamma=gamma)


def test_class_balanced_rejects_non_callable():
    with pytest.raises(ValueError, match="strategy must be a callable"):
        class_balanced("entropy")


@SETTINGS
@given(st.data())
def test_class_balanced_balance_property(data):
    c = data.draw(st.integers(2, 6), label="n_classes")
    n_pool = data.draw(st.integers(2, 40), label="n_pool")
    pseudo = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n_pool, max_size=n_pool)))
    p = np.full((n_pool, c), 0.1 / c)
    p[np.arange(n_pool), pseudo] += 0.9
    p /= p.sum(axis=1, keepdims=True)
    y_lab = np.array(data.draw(st.lists(st.integers(0, c - 1), max_size=12)), dtype=int)
    n = data.draw(st.integers(1, n_pool), label="n_instances")
    seed = data.draw(st.integers(0, 1000))
    query = class_balanced(entropy_sampling, gamma=1.0)  # every row is a candidate
    idx, scores = query(TableClassifier(p), _ids(n_pool), n, random_state=seed, y_labeled=y_lab)
    assert idx.shape == (n,) and np.unique(idx).size == n
    np.testing.assert_allclose(scores, entropy_scores(p)[idx])
    final = np.bincount(y_lab, minlength=c) + np.bincount(pseudo[idx], minlength=c)
    left = np.bincount(pseudo, minlength=c) - np.bincount(pseudo[idx], minlength=c)
    picked = np.bincount(pseudo[idx], minlength=c) > 0
    # A class that still has candidates was never passed over for a more frequent one: every
    # class picked from ends at most one above it.
    for a in np.flatnonzero(left > 0):
        assert np.all(final[picked] <= final[a] + 1), (final, left, picked)
    again = query(TableClassifier(p), _ids(n_pool), n, random_state=seed, y_labeled=y_lab)[0]
    np.testing.assert_array_equal(idx, again)


def test_class_balanced_takes_rarest_classes_first():
    # 3 classes; labelled counts 5, 0, 1. Candidates of every class exist.
    p = np.tile(np.eye(3) * 0.8 + 0.2 / 3, (10, 1))
    y_lab = np.array([0] * 5 + [2])
    query = class_balanced(entropy_sampling, gamma=1.0, random_state=0)
    idx, _ = query(TableClassifier(p), _ids(30), 3, y_labeled=y_lab)
    assert sorted((np.arange(30) % 3)[idx].tolist()) == [1, 1, 2]


def test_class_balanced_stays_in_candidates_when_a_class_has_none():
    # Defect 5 of the reference code: no random filling when a class has no candidate.
    n_pool = 100
    pred = np.where(np.arange(n_pool) < 50, 0, 1)  # class 2 is never predicted
    conf = np.linspace(0.4, 0.99, n_pool)  # uncertainty decreases with the row index
    p = np.zeros((n_pool, 3))
    p[np.arange(n_pool), pred] = conf
    p[:, 2] += 1 - conf
    cand = np.argsort(-entropy_scores(p))[:20]  # gamma = 0.2 -> 20 candidates
    query = class_balanced(entropy_sampling, gamma=0.2)
    for seed in range(5):
        idx, _ = query(TableClassifier(p), _ids(n_pool), 10, random_state=seed, y_labeled=[2, 2])
        assert set(idx.tolist()) <= set(cand.tolist())
        assert np.unique(idx).size == 10


def test_class_balanced_with_a_foreign_strategy():
    from modAL.uncertainty import entropy_sampling as modal_entropy

    p = _softmax(np.random.default_rng(0).normal(size=(40, 4)))
    clf = TableClassifier(p)
    query = class_balanced(modal_entropy, gamma=0.5)
    # Labelled-set keywords are used for class counts, not forwarded to modAL's function.
    idx, scores = query(clf, _ids(40), 6, random_state=0, y_labeled=[0, 0])
    assert np.unique(idx).size == 6
    cand = np.argsort(-entropy_scores(p))[:20]
    assert set(idx.tolist()) <= set(cand.tolist())
    np.testing.assert_allclose(scores, entropy_scores(p)[idx])


def test_class_balanced_reuses_the_strategy_model_pass():
    p = _softmax(np.random.default_rng(0).normal(size=(40, 4)))
    clf = TableClassifier(p)
    class_balanced(margin_sampling)(clf, _ids(40), 3)
    assert clf.calls == 1


def test_class_balanced_construction_seed_makes_a_loop_reproducible():
    p = _softmax(np.random.default_rng(0).normal(size=(60, 4)))

    def loop(seed):
        query = class_balanced(entropy_sampling, gamma=0.5, random_state=seed)
        return [query(TableClassifier(p), _ids(60), 4)[0].tolist() for _ in range(3)]

    assert loop(1) == loop(1)
    assert loop(1) != loop(2)


def test_candidate_count_at_least_budget():
    p = _softmax(np.random.default_rng(0).normal(size=(30, 3)))
    idx, _ = class_balanced(entropy_sampling, gamma=0.01)(TableClassifier(p), _ids(30), 5)
    assert np.unique(idx).size == 5


# ----------------------------------------------------------------------- driven by modAL
@pytest.fixture(scope="module")
def digits_flat():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


@pytest.mark.parametrize(
    "strategy",
    [
        *ALL_QUERIES,
        class_balanced(entropy_sampling, gamma=0.1, random_state=0),
        class_balanced(coreset_sampling, gamma=0.2, random_state=0),
    ],
    ids=lambda f: f.__name__,
)
def test_modal_active_learner_loop(digits_flat, strategy):
    from modAL.models import ActiveLearner
    from sklearn.linear_model import LogisticRegression

    import skpeal  # noqa: F401  (applies the modAL compatibility layer)

    X, y = digits_flat
    seed = np.arange(0, 400, 20)  # 20 labelled, every class present
    pool = np.setdiff1d(np.arange(400), seed)
    learner = ActiveLearner(
        estimator=LogisticRegression(max_iter=300),
        query_strategy=strategy,
        X_training=X[seed],
        y_training=y[seed],
    )
    X_pool, y_pool = X[pool], y[pool]
    for r in range(3):
        idx, X_query = learner.query(X_pool, n_instances=10, random_state=r)
        assert idx.shape == (10,) and np.unique(idx).size == 10
        np.testing.assert_array_equal(X_query, X_pool[idx])
        learner.teach(X_query, y_pool[idx])
        X_pool, y_pool = np.delete(X_pool, idx, axis=0), np.delete(y_pool, idx)
        assert learner.X_training.shape[0] == 20 + 10 * (r + 1)
    assert learner.score(X, y) > 0.5


def test_modal_learner_supplies_labelled_set_and_metrics(digits_flat):
    from modAL.models import ActiveLearner
    from sklearn.linear_model import LogisticRegression

    import skpeal  # noqa: F401

    X, y = digits_flat
    learner = ActiveLearner(
        LogisticRegression(max_iter=300), featdist_sampling, X_training=X[:30], y_training=y[:30]
    )
    for fn in [coreset_sampling, featdist_sampling, class_balanced(entropy_sampling)]:
        via_learner = fn(learner, X[30:], 5, random_state=0)
        explicit = fn(learner.estimator, X[30:], 5, random_state=0, X_labeled=X[:30],
                      y_labeled=y[:30])  # fmt: skip
        np.testing.assert_array_equal(via_learner[0], explicit[0])
    idx, _, metrics = learner.query(X[30:], n_instances=4, return_metrics=True, random_state=0)
    np.testing.assert_array_equal(metrics, featdist_sampling(learner, X[30:], 4, random_state=0)[1])


def test_module_exports():
    for name in S.__all__:
        assert callable(getattr(S, name)) and getattr(S, name).__doc__
