"""Evaluation metrics for active-learning runs: calibration, error detection, learning curves.

Pure numpy and scikit-learn; importing this module does not import torch.

* :func:`expected_calibration_error` and :func:`reliability_curve` measure how well the
  top-label confidence of ``predict_proba`` matches accuracy, with equal-width bins.
* :func:`error_detection_auroc` measures how well an uncertainty score (for example the
  entropy used to query labels) separates wrong predictions from right ones.
* :func:`area_under_learning_curve` summarises accuracy against the number of labels.

**Bins.** With ``n_bins`` bins the edges are ``np.arange(n_bins + 1) / n_bins``, that is
``i / n_bins`` correctly rounded. A confidence ``c`` falls in bin ``i`` when
``edges[i] < c <= edges[i + 1]``, that is ``(i/n_bins, (i+1)/n_bins]``; a confidence of
exactly 0 goes to the first bin. A confidence equal to an edge as Python writes it (``0.3``
with 10 bins, ``0.6`` with 5) lands in the bin that the edge closes, whatever the rounding of
``0.3 * 10``.

**Labels and columns.** ``proba`` has one column per class. ``y_true`` is turned into column
indices through ``classes``: pass the estimator's ``classes_`` (``classes=clf.classes_``) and
any labels work (strings included). Without ``classes``, ``y_true`` must already hold integer
column indices ``0 .. n_classes - 1``. The top-label prediction is
``np.argmax(proba, axis=1)``; ties go to the first of the tied columns, as in scikit-learn's
``predict``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from ._validation import check_int, check_proba, label_columns

__all__ = [
    "area_under_learning_curve",
    "error_detection_auroc",
    "expected_calibration_error",
    "reliability_curve",
]

def _as_1d(values, name):
    """Return ``values`` as a non-empty 1-D array, or raise a ValueError naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must not be empty.")
    return arr


def _as_finite_float_1d(values, name):
    """Return ``values`` as a non-empty, finite, 1-D float64 array."""
    arr = _as_1d(values, name)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}.") from exc
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][0]
        raise ValueError(f"{name} must be finite, got {float(bad)} at index {_first_bad(arr)}.")
    return arr


def _first_bad(arr):
    """Index of the first non-finite entry of ``arr`` (a tuple for n-D arrays)."""
    idx = np.argwhere(~np.isfinite(arr))[0]
    return int(idx[0]) if idx.size == 1 else tuple(int(i) for i in idx)


def _label_indices(y_true, n_classes, classes):
    """Map ``y_true`` to column indices of ``proba``, through ``classes`` when given."""
    y_true = _as_1d(y_true, "y_true")
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or classes.shape[0] != n_classes:
            raise ValueError(
                f"classes must be 1-D with one entry per column of proba ({n_classes}), "
                f"got shape {classes.shape}."
            )
        return label_columns(y_true, classes, name="y_true", classes_name="classes")
    if y_true.dtype.kind == "f" and np.all(np.isfinite(y_true)) and np.all(y_true % 1 == 0):
        y_true = y_true.astype(np.intp)
    if y_true.dtype.kind not in "iu":
        raise ValueError(
            "y_true must hold integer column indices of proba when classes is None, got "
            f"dtype {y_true.dtype} (pass classes=clf.classes_ to use class labels)."
        )
    if y_true.min() < 0 or y_true.max() >= n_classes:
        bad = y_true[(y_true < 0) | (y_true >= n_classes)][0]
        raise ValueError(
            f"y_true must hold column indices in [0, {n_classes - 1}] when classes is None, "
            f"got {bad.item()!r} (pass classes=clf.classes_ to use class labels)."
        )
    return y_true.astype(np.intp)


def _confidence_and_correct(y_true, proba, classes):
    """Top-label confidence and correctness of each row."""
    proba = check_proba(proba, min_samples=1)
    y_idx = _label_indices(y_true, proba.shape[1], classes)
    if y_idx.shape[0] != proba.shape[0]:
        raise ValueError(
            f"y_true and proba have different numbers of samples: {y_idx.shape[0]} and "
            f"{proba.shape[0]}."
        )
    pred = np.argmax(proba, axis=1)
    confidence = np.clip(proba[np.arange(proba.shape[0]), pred], 0.0, 1.0)
    return confidence, (pred == y_idx).astype(np.float64)


# Kept by hand: sklearn.calibration.calibration_curve is binary-only (positive-class
# probability) and drops empty bins; top-label multi-class ECE needs both.
def _bin_index(confidence, n_bins):
    """Bin of each confidence: ``i`` such that ``edges[i] < c <= edges[i + 1]`` (0 -> bin 0)."""
    edges = np.arange(n_bins + 1) / n_bins
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def reliability_curve(y_true, proba, *, n_bins=15, classes=None):
    """Per-bin mean confidence and accuracy of the top-label prediction.

    Rows are grouped by their top-label confidence ``max(proba[i])`` into ``n_bins``
    equal-width bins over [0, 1] (see the module docstring for the exact edges). Plotting
    ``bin_accuracy`` against ``bin_confidence`` gives a reliability diagram; a perfectly
    calibrated model lies on the diagonal.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: values of ``classes`` when given, otherwise column indices of ``proba``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities; rows must sum to 1 (within 1e-4) and be finite.
    n_bins : int, default=15
        Number of equal-width confidence bins, ``>= 1``. Bin ``i`` covers
        ``(i / n_bins, (i + 1) / n_bins]``; a confidence of 0 goes to bin 0.
    classes : array-like of shape (n_classes,), default=None
        Label of each column of ``proba``, for example ``clf.classes_``. When None,
        ``y_true`` must hold integer column indices.

    Returns
    -------
    bin_confidence : ndarray of shape (n_bins,)
        Mean top-label confidence of the rows in each bin; NaN for an empty bin.
    bin_accuracy : ndarray of shape (n_bins,)
        Fraction of rows in each bin whose top-label prediction is right; NaN for an
        empty bin.
    bin_counts : ndarray of shape (n_bins,)
        Number of rows in each bin (int64); 0 for an empty bin.

    Raises
    ------
    ValueError
        If the inputs have mismatched lengths, ``proba`` is not a valid probability matrix,
        ``y_true`` has labels that are not in ``classes`` (or out-of-range indices), or
        ``n_bins < 1``.

    See Also
    --------
    expected_calibration_error : The count-weighted gap between the two curves.
    sklearn.calibration.calibration_curve : The binary, positive-class analogue.

    Notes
    -----
    Empty bins are kept (as NaN) so that every call with the same ``n_bins`` returns arrays
    of the same length: curves from several seeds can be stacked and averaged with
    ``np.nanmean``, and matplotlib leaves gaps at NaN. Drop them with
    ``mask = bin_counts > 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from skpeal.metrics import reliability_curve
    >>> proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    >>> # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (right); bins of width 0.25
    >>> conf, acc, counts = reliability_curve([0, 1, 1, 1], proba, n_bins=4)
    >>> conf
    array([ nan,  nan, 0.65, 0.85])
    >>> acc
    array([nan, nan, 1. , 0.5])
    >>> counts
    array([0, 0, 2, 2])
    """
    n_bins = check_int("n_bins", n_bins, 1)
    confidence, correct = _confidence_and_correct(y_true, proba, classes)
    bins = _bin_index(confidence, n_bins)
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.where(counts > 0, conf_sum / counts, np.nan)
        bin_accuracy = np.where(counts > 0, acc_sum / counts, np.nan)
    return bin_confidence, bin_accuracy, counts


def expected_calibration_error(y_true, proba, *, n_bins=15, classes=None):
    """Top-label expected calibration error (ECE) with equal-width bins.

    ``ECE = sum_b (n_b / n) * |acc_b - conf_b|`` over the non-empty bins ``b`` of
    :func:`reliability_curve`, where ``n_b`` is the number of rows in the bin, ``acc_b``
    their accuracy and ``conf_b`` their mean top-label confidence (Guo et al., 2017).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels: values of ``classes`` when given, otherwise column indices of ``proba``.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities; rows must sum to 1 (within 1e-4) and be finite.
    n_bins : int, default=15
        Number of equal-width confidence bins, ``>= 1``. Bin ``i`` covers
        ``(i / n_bins, (i + 1) / n_bins]``; a confidence of 0 goes to bin 0.
    classes : array-like of shape (n_classes,), default=None
        Label of each column of ``proba``, for example ``clf.classes_``. When None,
        ``y_true`` must hold integer column indices.

    Returns
    -------
    ece : float
        Expected calibration error, in [0, 1]; 0 means confidence matches accuracy in
        every bin.

    Raises
    ------
    ValueError
        If the inputs have mismatched lengths, ``proba`` is not a valid probability matrix,
        ``y_true`` has labels that are not in ``classes`` (or out-of-range indices), or
        ``n_bins < 1``.

    See Also
    --------
    reliability_curve : The per-bin values this is computed from.

    Notes
    -----
    ECE depends on ``n_bins``: compare values computed with the same number of bins. With
    ``n_bins=1`` it is ``|accuracy - mean confidence|``.

    Examples
    --------
    >>> import numpy as np
    >>> from skpeal.metrics import expected_calibration_error
    >>> proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> # confidences 0.9 (right), 0.6 (right), 0.7 (wrong: predicts 1, truth 0); bins of
    >>> # width 0.25: (0.5, 0.75] holds {0.6, 0.7}, (0.75, 1] holds {0.9}
    >>> # ECE = 2/3 * |0.5 - 0.65| + 1/3 * |1 - 0.9| = 0.1 + 0.0333...
    >>> round(expected_calibration_error([0, 0, 0], proba, n_bins=4), 6)
    0.133333

    With string labels, pass the estimator's ``classes_``:

    >>> ece = expected_calibration_error(
    ...     ["cat", "dog"], [[0.8, 0.2], [0.1, 0.9]], n_bins=10, classes=["cat", "dog"]
    ... )
    >>> round(ece, 6)  # both right: 1/2 * |1 - 0.8| + 1/2 * |1 - 0.9|
    0.15
    """
    conf, acc, counts = reliability_curve(y_true, proba, n_bins=n_bins, classes=classes)
    mask = counts > 0
    weights = counts[mask] / counts.sum()
    return float(np.clip(np.sum(weights * np.abs(acc[mask] - conf[mask])), 0.0, 1.0))


def error_detection_auroc(y_true, y_pred, score):
    """AUROC of an uncertainty score for detecting wrong predictions.

    The positive class is "the prediction is wrong" (``y_pred != y_true``) and ``score`` is
    the decision value, higher meaning more uncertain. 1.0 means every wrong prediction
    scores higher than every right one, 0.5 is chance, 0.0 is perfectly reversed. Computed
    with :func:`sklearn.metrics.roc_auc_score`; ties count one half.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels, compared with ``y_true`` element by element.
    score : array-like of shape (n_samples,)
        Uncertainty of each prediction (for example the predictive entropy); must be finite.

    Returns
    -------
    auroc : float
        Area under the ROC curve, in [0, 1]; NaN when every prediction is right or every
        prediction is wrong (the AUROC is then undefined). No warning is raised: check with
        ``np.isnan``.

    Raises
    ------
    ValueError
        If the three inputs are not 1-D arrays of the same non-zero length, or ``score`` is
        not finite.

    See Also
    --------
    sklearn.metrics.roc_auc_score : The underlying computation.

    Examples
    --------
    >>> from skpeal.metrics import error_detection_auroc
    >>> # wrong predictions are samples 1 and 3; their scores (0.9, 0.5) beat the right
    >>> # ones (0.1, 0.6) in 3 of the 4 (wrong, right) pairs
    >>> error_detection_auroc([0, 1, 2, 0], [0, 2, 2, 1], [0.1, 0.9, 0.6, 0.5])
    0.75
    >>> error_detection_auroc([0, 1], [0, 1], [0.3, 0.4])
    nan
    """
    y_true = _as_1d(y_true, "y_true")
    y_pred = _as_1d(y_pred, "y_pred")
    score = _as_finite_float_1d(score, "score")
    if not y_true.shape[0] == y_pred.shape[0] == score.shape[0]:
        raise ValueError(
            "y_true, y_pred and score must have the same length, got "
            f"{y_true.shape[0]}, {y_pred.shape[0]} and {score.shape[0]}."
        )
    wrong = np.asarray(y_true != y_pred, dtype=bool)
    if wrong.shape != y_true.shape:
        raise ValueError("y_true and y_pred could not be compared element by element.")
    if wrong.all() or not wrong.any():
        return float("nan")
    return float(roc_auc_score(wrong.astype(np.int64), score))


def area_under_learning_curve(n_labels, accuracy, *, normalize=True):
    """Area under a learning curve (accuracy against number of labels), trapezoidal rule.

    Parameters
    ----------
    n_labels : array-like of shape (n_points,)
        Number of labelled samples at each point, strictly increasing.
    accuracy : array-like of shape (n_points,)
        Accuracy (or any other score) at each point; must be finite.
    normalize : bool, default=True
        If True, divide the area by the label range ``n_labels[-1] - n_labels[0]``, so the
        result is the mean accuracy over that range (in [0, 1] for accuracies in [0, 1]) and
        comparable between runs with different budgets. If False, return the raw area in
        accuracy x labels.

    Returns
    -------
    aulc : float
        The (normalised) area. With a single point there is no width: the normalised value
        is that point's accuracy and the raw area is 0.0.

    Raises
    ------
    ValueError
        If the inputs are not 1-D arrays of the same non-zero length, are not finite, or
        ``n_labels`` is not strictly increasing.

    Examples
    --------
    >>> from skpeal.metrics import area_under_learning_curve
    >>> # trapezoids: 10 * (0.5 + 0.7) / 2 = 6 and 20 * (0.7 + 0.8) / 2 = 15; 21 / 30 = 0.7
    >>> area_under_learning_curve([10, 20, 40], [0.5, 0.7, 0.8])
    0.7
    >>> area_under_learning_curve([10, 20, 40], [0.5, 0.7, 0.8], normalize=False)
    21.0
    """
    x = _as_finite_float_1d(n_labels, "n_labels")
    y = _as_finite_float_1d(accuracy, "accuracy")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"n_labels and accuracy must have the same length, got {x.shape[0]} and {y.shape[0]}."
        )
    steps = np.diff(x)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            "n_labels must be strictly increasing, got "
            f"n_labels[{i}]={x[i]:g} followed by n_labels[{i + 1}]={x[i + 1]:g}."
        )
    if x.shape[0] == 1:
        return float(y[0]) if normalize else 0.0
    area = float(np.sum(steps * (y[1:] + y[:-1]) / 2.0))
    if normalize:
        return area / float(x[-1] - x[0])
    return area
