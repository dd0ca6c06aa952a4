"""Tests for skpeal.metrics: hand-computed values, edge cases, validation and properties."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skpeal.metrics import (
    _bin_index,
    area_under_learning_curve,
    error_detection_auroc,
    expected_calibration_error,
    reliability_curve,
)

# Five rows, three classes; n_bins=5 gives edges 0, .2, .4, .6, .8, 1.
#   row  proba             y  pred  conf  right  bin
#   0    [.9, .05, .05]    0  0     .9    1      4  (.8, 1]
#   1    [.05, .9, .05]    2  1     .9    0      4
#   2    [.5, .3, .2]      0  0     .5    1      2  (.4, .6]
#   3    [.2, .2, .6]      1  2     .6    0      2  (.6 closes bin 2)
#   4    [.3, .4, .3]      0  1     .4    0      1  (.2, .4] (.4 closes bin 1)
HAND_PROBA = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.05, 0.9, 0.05],
        [0.5, 0.3, 0.2],
        [0.2, 0.2, 0.6],
        [0.3, 0.4, 0.3],
    ]
)
HAND_Y = np.array([0, 2, 0, 1, 0])


# --------------------------------------------------------------------------- reliability


def test_reliability_curve_hand_computed():
    conf, acc, counts = reliability_curve(HAND_Y, HAND_PROBA, n_bins=5)
    # bin 1: {.4 wrong}; bin 2: {.5 right, .6 wrong}; bin 4: {.9 right, .9 wrong}
    np.testing.assert_array_equal(counts, [0, 1, 2, 0, 2])
    np.testing.assert_allclose(conf, [np.nan, 0.4, 0.55, np.nan, 0.9])
    np.testing.assert_allclose(acc, [np.nan, 0.0, 0.5, np.nan, 0.5])
    assert counts.dtype == np.int64
    assert conf.shape == acc.shape == counts.shape == (5,)


@pytest.mark.parametrize("k", range(1, 11))
def test_confidence_on_an_edge_lands_in_the_bin_it_closes(k):
    # confidence k/10 with 10 columns: the rest (1 - k/10) spread over 9 columns is <= k/10
    c = k / 10
    row = np.full(10, (1 - c) / 9)
    row[0] = c
    _, _, counts = reliability_curve([0], row[None, :], n_bins=10)
    # (i/10, (i+1)/10] holds k/10 for i = k - 1
    assert np.flatnonzero(counts).tolist() == [k - 1]


def test_bin_index_zero_and_one():
    # 0 belongs to the first bin (its left edge is otherwise open); 1 to the last
    np.testing.assert_array_equal(_bin_index(np.array([0.0, 1e-12, 1.0]), 4), [0, 0, 3])
    # 0.6 with 5 bins: 3 * 0.2 rounds to 0.6000000000000001, 3 / 5 to 0.6; bin 2 closes at .6
    np.testing.assert_array_equal(_bin_index(np.array([0.6, 0.6 + 1e-9]), 5), [2, 3])


def test_edge_written_as_a_fraction_closes_its_bin():
    # 5/6 rounds up to 0.8333333333333334 while 5 * (1/6) (np.linspace) rounds down to
    # 0.8333333333333333: a confidence of 5/6 must still land in bin 4, (4/6, 5/6]
    _, _, counts = reliability_curve([0], [[5 / 6, 1 / 6]], n_bins=6)
    assert np.flatnonzero(counts).tolist() == [4]


def test_reliability_curve_single_bin_is_overall_mean():
    conf, acc, counts = reliability_curve(HAND_Y, HAND_PROBA, n_bins=1)
    # mean confidence (.9 + .9 + .5 + .6 + .4) / 5 = 3.3 / 5 = .66; accuracy 2/5
    np.testing.assert_allclose(conf, [0.66])
    np.testing.assert_allclose(acc, [0.4])
    np.testing.assert_array_equal(counts, [5])


# --------------------------------------------------------------------------- ECE


def test_ece_hand_computed():
    # n = 5: bin 1: 1/5 * |0 - .4| = .08; bin 2: 2/5 * |.5 - .55| = .02;
    # bin 4: 2/5 * |.5 - .9| = .16; ECE = .08 + .02 + .16 = .26
    assert expected_calibration_error(HAND_Y, HAND_PROBA, n_bins=5) == pytest.approx(0.26)


def test_ece_hand_computed_default_bins():
    # 15 bins of width 1/15: .9 in (13/15, 14/15] = (.867, .933]; .6 in (8/15, 9/15] = (.533, .6];
    # .5 in (7/15, 8/15] = (.467, .533]; .4 in (5/15, 6/15] = (.333, .4]
    # ECE = 2/5 * |.5 - .9| + 1/5 * |1 - .5| + 1/5 * |0 - .6| + 1/5 * |0 - .4|
    #     = .16 + .1 + .12 + .08 = .46
    assert expected_calibration_error(HAND_Y, HAND_PROBA) == pytest.approx(0.46)


def test_ece_single_bin_is_gap_between_accuracy_and_confidence():
    # |.4 - .66| = .26 (the same value as with 5 bins, by coincidence of this data)
    assert expected_calibration_error(HAND_Y, HAND_PROBA, n_bins=1) == pytest.approx(0.26)


def test_ece_with_string_labels_and_unsorted_classes():
    # column 0 is "dog", column 1 is "cat"
    proba = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    y = ["dog", "dog", "cat"]
    # preds: dog (conf .8, right), cat (.7, wrong), dog (.6, wrong); 10 bins, each in its own
    # bin: ECE = 1/3 * (|1 - .8| + |0 - .7| + |0 - .6|) = 1/3 * 1.5 = .5
    ece = expected_calibration_error(y, proba, n_bins=10, classes=["dog", "cat"])
    assert ece == pytest.approx(0.5)
    # the same as integer column indices
    assert expected_calibration_error([0, 0, 1], proba, n_bins=10) == pytest.approx(0.5)


def test_ece_classes_from_a_fitted_sklearn_estimator():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.where(X[:, 0] > 0, "pos", "neg")
    clf = LogisticRegression().fit(X, y)
    proba = clf.predict_proba(X)
    ece = expected_calibration_error(y, proba, classes=clf.classes_)
    # the same number from column indices (classes_ is sorted: "neg", "pos")
    idx = np.searchsorted(clf.classes_, y)
    assert ece == pytest.approx(expected_calibration_error(idx, proba))
    assert 0.0 <= ece <= 1.0


def test_ece_perfect_confident_model_is_zero_and_wrong_confident_is_one():
    proba = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error([0, 1, 2, 1], proba) == 0.0
    assert expected_calibration_error([1, 2, 0, 0], proba) == 1.0


def test_ece_float_integral_labels_accepted():
    ece = expected_calibration_error(HAND_Y.astype(float), HAND_PROBA, n_bins=5)
    assert ece == pytest.approx(0.26)


def test_ece_accepts_float32_softmax_rows():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 1000)).astype(np.float32)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert proba.dtype == np.float32
    assert 0.0 <= expected_calibration_error(rng.integers(0, 1000, 50), proba) <= 1.0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("func", [expected_calibration_error, reliability_curve])
@pytest.mark.parametrize(
    ("y", "proba", "kwargs", "match"),
    [
        ([0, 1], [0.5, 0.5], {}, "proba must be a 2-D array"),
        ([], np.zeros((0, 2)), {}, "at least one row"),
        ([0], np.zeros((1, 0)), {}, "at least one column"),
        ([0, 1], [[0.5, 0.5]], {}, "different numbers of samples: 2 and 1"),
        ([0, 1], [[0.5, 0.4], [0.5, 0.5]], {}, "row 0 sums to"),
        ([0], [[1.5, -0.5]], {}, r"proba must lie in \[0, 1\]"),
        ([0], [[np.nan, 1.0]], {}, "proba must be finite"),
        ([0], [[np.inf, 0.0]], {}, "proba must be finite"),
        ([0], [["a", "b"]], {}, "proba must be numeric"),
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], {}, r"column indices in \[0, 1\].*got 2"),
        ([0, -1], [[0.5, 0.5], [0.5, 0.5]], {}, "got -1"),
        (["a"], [[0.5, 0.5]], {}, "pass classes=clf.classes_"),
        ([0.5], [[0.5, 0.5]], {}, "integer column indices"),
        ([[0]], [[0.5, 0.5]], {}, "y_true must be 1-D"),
        (["c"], [[0.5, 0.5]], {"classes": ["a", "b"]}, "labels not in classes: 'c'"),
        (["a"], [[0.5, 0.5]], {"classes": ["a"]}, "one entry per column of proba"),
        (["a"], [[0.5, 0.5]], {"classes": ["a", "a"]}, "duplicates"),
        ([0], [[0.5, 0.5]], {"n_bins": 0}, "n_bins must be an integer >= 1, got 0"),
    ],
)
def test_calibration_bad_input_raises_value_error(func, y, proba, kwargs, match):
    with pytest.raises(ValueError, match=match):
        func(y, proba, **kwargs)


@pytest.mark.parametrize("n_bins", [2.5, True, "10", None])
def test_n_bins_must_be_an_integer(n_bins):
    with pytest.raises(TypeError, match="n_bins must be an integer"):
        expected_calibration_error([0], [[1.0, 0.0]], n_bins=n_bins)


def test_n_bins_numpy_integer_accepted():
    ece = expected_calibration_error(HAND_Y, HAND_PROBA, n_bins=np.int64(5))
    assert ece == pytest.approx(0.26)


def test_row_sum_tolerance():
    # within 1e-4 is accepted, 1e-3 off is not
    assert expected_calibration_error([0], [[0.99995, 0.0]], n_bins=2) == pytest.approx(1 - 0.99995)
    with pytest.raises(ValueError, match="sum to 1"):
        expected_calibration_error([0], [[0.999, 0.0]])


# --------------------------------------------------------------------------- AUROC


def test_error_detection_auroc_hand_computed_with_tie():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 0, 2]  # wrong: rows 1 and 3
    score = [0.2, 0.8, 0.5, 0.4, 0.4]
    # wrong scores {.8, .4} vs right scores {.2, .5, .4}: .8 beats all three (3);
    # .4 beats .2 (1), loses to .5 (0), ties .4 (1/2); AUROC = 4.5 / 6 = .75
    assert error_detection_auroc(y_true, y_pred, score) == pytest.approx(0.75)


def test_error_detection_auroc_perfect_reversed_and_string_labels():
    y_true = ["cat", "dog", "dog", "cat"]
    y_pred = ["cat", "cat", "dog", "dog"]  # wrong: rows 1 and 3
    assert error_detection_auroc(y_true, y_pred, [0.1, 0.9, 0.2, 0.8]) == 1.0
    assert error_detection_auroc(y_true, y_pred, [0.9, 0.1, 0.8, 0.2]) == 0.0
    # a constant score cannot separate anything
    assert error_detection_auroc(y_true, y_pred, [0.5] * 4) == 0.5


@pytest.mark.parametrize("y_pred", [[0, 1, 2], [1, 2, 0]], ids=["all-right", "all-wrong"])
def test_error_detection_auroc_undefined_is_nan(y_pred):
    assert math.isnan(error_detection_auroc([0, 1, 2], y_pred, [0.1, 0.2, 0.3]))


@pytest.mark.parametrize(
    ("y_true", "y_pred", "score", "match"),
    [
        ([0, 1], [0, 1, 1], [0.1, 0.2], "same length, got 2, 3 and 2"),
        ([0, 1], [0, 0], [0.1], "same length"),
        ([0, 1], [0, 0], [0.1, np.nan], "score must be finite"),
        ([0, 1], [0, 0], [[0.1, 0.2]], "score must be 1-D"),
        ([], [], [], "y_true must not be empty"),
        ([0, 1], [0, 0], ["a", "b"], "score must be numeric"),
    ],
)
def test_error_detection_auroc_bad_input(y_true, y_pred, score, match):
    with pytest.raises(ValueError, match=match):
        error_detection_auroc(y_true, y_pred, score)


# --------------------------------------------------------------------------- AULC


def test_aulc_hand_computed():
    # trapezoids: (20 - 10) * (.5 + .7) / 2 = 6; (40 - 20) * (.7 + .8) / 2 = 15; area 21
    # over the range 40 - 10 = 30: 21 / 30 = .7 (the plain mean of the points is .6667)
    assert area_under_learning_curve([10, 20, 40], [0.5, 0.7, 0.8]) == pytest.approx(0.7)
    assert area_under_learning_curve(
        [10, 20, 40], [0.5, 0.7, 0.8], normalize=False
    ) == pytest.approx(21.0)


def test_aulc_two_points_and_one_point():
    # (30 - 10) * (.2 + .6) / 2 = 8 -> 8 / 20 = .4
    assert area_under_learning_curve([10, 30], [0.2, 0.6]) == pytest.approx(0.4)
    assert area_under_learning_curve([10], [0.42]) == 0.42
    assert area_under_learning_curve([10], [0.42], normalize=False) == 0.0


@pytest.mark.parametrize(
    ("n_labels", "accuracy", "match"),
    [
        ([10, 20], [0.5], "same length, got 2 and 1"),
        (
            [10, 10],
            [0.5, 0.6],
            r"strictly increasing.*n_labels\[0\]=10 followed by n_labels\[1\]=10\.",
        ),
        ([10, 30, 20], [0.5, 0.6, 0.7], r"n_labels\[1\]=30 followed by n_labels\[2\]=20\."),
        ([], [], "n_labels must not be empty"),
        ([10, 20], [0.5, np.nan], "accuracy must be finite"),
        ([10, np.inf], [0.5, 0.6], "n_labels must be finite, got inf at index 1"),
        ([[10, 20]], [0.5, 0.6], "n_labels must be 1-D"),
    ],
)
def test_aulc_bad_input(n_labels, accuracy, match):
    with pytest.raises(ValueError, match=match):
        area_under_learning_curve(n_labels, accuracy)


# --------------------------------------------------------------------------- import cost


def test_import_does_not_pull_in_torch():
    code = "import sys, skpeal.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- properties


@st.composite
def _proba_and_labels(draw):
    """Rows drawn as softmax of drawn logits, with labels drawn as column indices."""
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 6))
    logits = draw(
        arrays(np.float64, (n, k), elements=st.floats(-20, 20, allow_nan=False, width=64))
    )
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba = z / z.sum(axis=1, keepdims=True)
    y = np.asarray(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return y, proba


@settings(max_examples=60, deadline=None)
@given(data=_proba_and_labels(), n_bins=st.integers(1, 30))
def test_ece_bounded_and_consistent_with_curve(data, n_bins):
    y, proba = data
    ece = expected_calibration_error(y, proba, n_bins=n_bins)
    assert 0.0 <= ece <= 1.0
    conf, acc, counts = reliability_curve(y, proba, n_bins=n_bins)
    assert counts.sum() == len(y)
    filled = counts > 0
    assert np.all(np.isnan(conf[~filled])) and np.all(np.isnan(acc[~filled]))
    assert np.all((acc[filled] >= 0) & (acc[filled] <= 1))
    # mean confidence in bin i lies in that bin (0 aside: it cannot be a top-label confidence)
    i = np.flatnonzero(filled)
    assert np.all(conf[i] > i / n_bins - 1e-12) and np.all(conf[i] <= (i + 1) / n_bins + 1e-12)
    expected = np.sum(counts[filled] / len(y) * np.abs(acc[filled] - conf[filled]))
    assert ece == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(data=_proba_and_labels(), seed=st.integers(0, 2**32 - 1))
def test_ece_invariant_to_row_order_and_single_bin_is_gap(data, seed):
    y, proba = data
    perm = np.random.default_rng(seed).permutation(len(y))
    ece = expected_calibration_error(y, proba, n_bins=7)
    assert expected_calibration_error(y[perm], proba[perm], n_bins=7) == pytest.approx(
        ece, abs=1e-12
    )
    top = proba.max(axis=1)
    right = proba.argmax(axis=1) == y
    assert expected_calibration_error(y, proba, n_bins=1) == pytest.approx(
        abs(right.mean() - top.mean()), abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(
        st.integers(1, 10).flatmap(lambda m: st.tuples(st.just(m), st.integers(-(-m // 2), m))),
        min_size=1,
        max_size=8,
    ),
    n_bins=st.integers(1, 30),
)
def test_ece_zero_for_a_perfectly_calibrated_construction(groups, n_bins):
    # each group: m rows [c, 1 - c] with c = a / m >= 1/2 (so column 0 is predicted) and
    # exactly a of them labelled 0 (right): the group's accuracy equals its confidence, so
    # every bin, whatever groups it mixes, has accuracy equal to mean confidence -> ECE 0
    rows, labels = [], []
    for m, a in groups:
        c = a / m
        rows += [[c, 1 - c]] * m
        labels += [0] * a + [1] * (m - a)
    ece = expected_calibration_error(labels, np.array(rows), n_bins=n_bins)
    assert ece == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    wrong=st.lists(st.booleans(), min_size=2, max_size=50).filter(lambda w: 0 < sum(w) < len(w)),
    seed=st.integers(0, 2**32 - 1),
)
def test_auroc_one_when_score_separates_perfectly(wrong, seed):
    wrong = np.asarray(wrong)
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, len(wrong))
    y_pred = np.where(wrong, (y_true + 1) % 5, y_true)
    noise = rng.uniform(0, 0.49, len(wrong))  # any wrong score (>= 1) beats any right (< .5)
    assert error_detection_auroc(y_true, y_pred, wrong + noise) == 1.0
    assert error_detection_auroc(y_true, y_pred, -(wrong + noise)) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(1, 100), min_size=1, max_size=15),
    acc=st.data(),
)
def test_aulc_is_a_mean_within_the_accuracy_range(steps, acc):
    n_labels = np.cumsum([5, *steps])
    accuracy = np.asarray(
        acc.draw(st.lists(st.floats(0, 1), min_size=len(n_labels), max_size=len(n_labels)))
    )
    aulc = area_under_learning_curve(n_labels, accuracy)
    assert accuracy.min() - 1e-12 <= aulc <= accuracy.max() + 1e-12
    raw = area_under_learning_curve(n_labels, accuracy, normalize=False)
    assert raw == pytest.approx(np.trapezoid(accuracy, n_labels))
    assert aulc == pytest.approx(raw / (n_labels[-1] - n_labels[0]))
    # a constant curve has that constant as its normalised area
    assert area_under_learning_curve(n_labels, np.full(len(n_labels), 0.3)) == pytest.approx(0.3)
