"""Stopping criteria: when more labels stop paying, usable from any active-learning loop.

Each criterion is a small object fed once per round with what the model says *after*
that round's refit, and answers whether labelling could stop:

.. code-block:: python

    criterion = KappaAverage()
    for round in ...:
        ...  # query, label, refit
        if criterion.update(model.predict(X_stop)):
            print(criterion.message)  # a suggestion: the person decides

* :class:`EstimatedAccuracy` reads the model's *calibrated* probabilities on the
  unlabelled pool: their mean maximum is the accuracy the model expects there
  (:func:`estimated_accuracy`). It suggests stopping when that estimate reaches a target,
  or when it gained less than ``min_gain`` over the last ``window`` rounds, ``patience``
  rounds in a row. It is only as good as the calibration (train with
  ``calibration=...``), or as the estimate it is given: :func:`accuracy_interval`
  recalibrates the probabilities on the model's out-of-sample answers (the labels given
  since, against the predictions of the model before them) and adds an interval that
  widens when the model drifts between rounds; the labelling session feeds the criterion
  that estimate.
* :class:`KappaAverage` needs no calibration: it measures how much the predictions on a
  fixed *stop set* (any unlabelled images, kept the same every round) still change from
  one round to the next, as Cohen's kappa between consecutive rounds, and suggests
  stopping when the mean of the last ``window`` kappas reaches ``threshold`` (stabilising
  predictions, Bloodgood & Vijay-Shanker, CoNLL 2009).

The criteria are plain objects with no dependency on the estimator: a modAL loop, the
protocol runner or the labelling session feed them the same way. Each keeps its history
(``signals_``: the value it compares with its threshold, one per update, NaN while it
cannot judge yet) so the signal can be shown or plotted, and remembers the first update at
which it suggested stopping (``stopped_at_``).

References
----------
M. Bloodgood and K. Vijay-Shanker. A method for stopping active learning based on
stabilizing predictions and the need for user-adjustable stopping. CoNLL 2009, 39-47.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import numpy as np
from scipy.special import expit
from sklearn.metrics import cohen_kappa_score

from ._validation import check_int, check_proba, check_real

__all__ = ["EstimatedAccuracy", "KappaAverage", "StoppingCriterion", "accuracy_interval",
           "estimated_accuracy"]


def estimated_accuracy(proba):
    """The accuracy a calibrated model expects on the rows of ``proba``.

    The mean over rows of the largest class probability: for a calibrated model the
    probability of its top class is the chance that this prediction is right, so the mean
    is an estimate of the accuracy on those rows without any label.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities (rows summing to 1), e.g. ``model.predict_proba(X_pool)``.

    Returns
    -------
    estimate : float
        In ``[1 / n_classes, 1]``.

    Raises
    ------
    ValueError
        If ``proba`` is not a valid probability array or has no row.

    Examples
    --------
    >>> from skpeal.stopping import estimated_accuracy
    >>> estimated_accuracy([[0.9, 0.1], [0.6, 0.4]])
    0.75
    """
    p = check_proba(proba)
    if len(p) == 0:
        raise ValueError("proba has no row: the pool is empty, there is nothing to estimate")
    return float(p.max(axis=1).mean())


def _platt_fit(x, ok, weight, prior):
    """MAP fit of ``P(right) = sigmoid(a * x + b)`` with a Gaussian prior at ``(1, 0)``.

    Returns the parameters and the Hessian of the negative log posterior: Newton steps,
    halved until the posterior improves, on a strictly concave problem (the prior alone
    makes the Hessian positive definite).
    """
    X = np.column_stack([x, np.ones_like(x)])
    centre = np.array([1.0, 0.0])

    def loss(w):
        s = X @ w
        nll = weight * (ok * np.logaddexp(0, -s) + (1 - ok) * np.logaddexp(0, s))
        return float(nll.sum()) + 0.5 * prior * float(((w - centre) ** 2).sum())

    def hessian(w):
        q = expit(X @ w)
        return (X * (weight * q * (1 - q))[:, None]).T @ X + prior * np.eye(2)

    w, f = centre.copy(), loss(centre)
    for _ in range(100):
        grad = X.T @ (weight * (ok - expit(X @ w))) - prior * (w - centre)
        step = np.linalg.solve(hessian(w), grad)
        t = 1.0
        while t > 1e-8 and loss(w + t * step) > f:
            t /= 2
        w = w + t * step
        f_new = loss(w)
        if abs(f - f_new) < 1e-12 or np.abs(t * step).max() < 1e-10:
            break
        f = f_new
    return w, hessian(w)


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


_DISPERSION_PRIOR = 2.0  # pseudo-batches at dispersion 1 (the binomial noise alone)


def _check_answers(n, batch_confidence, batch_correct, batch_age, previous_confidence):
    """Validated arrays of the out-of-sample answers and of the previous model's confidence."""
    if (batch_confidence is None) != (batch_correct is None):
        raise ValueError("give both batch_confidence and batch_correct, or neither")
    conf = np.zeros(0) if batch_confidence is None else np.asarray(
        batch_confidence, dtype=float).reshape(-1)
    ok = np.zeros(0) if batch_correct is None else np.asarray(
        batch_correct, dtype=float).reshape(-1)
    if conf.shape != ok.shape:
        raise ValueError(f"batch_confidence has {conf.size} values, batch_correct {ok.size}")
    if not (np.isfinite(conf).all() and ((conf >= 0) & (conf <= 1)).all()):
        raise ValueError("batch_confidence must hold probabilities in [0, 1]")
    if not np.isin(ok, (0.0, 1.0)).all():
        raise ValueError("batch_correct must hold booleans (or 0/1)")
    age = np.zeros(conf.size) if batch_age is None else np.asarray(batch_age, dtype=float)
    age = age.reshape(-1)
    if age.shape != conf.shape:
        raise ValueError(f"batch_age has {age.size} values, batch_confidence {conf.size}")
    if not (np.isfinite(age).all() and (age >= 0).all()):
        raise ValueError("batch_age must hold non-negative numbers of rounds")
    prev = None
    if previous_confidence is not None:
        prev = np.asarray(previous_confidence, dtype=float).reshape(-1)
        if prev.size != n:
            raise ValueError(f"previous_confidence has {prev.size} values but proba has {n} "
                             "rows: give the previous model's confidence on the same images")
        if not (np.isfinite(prev).all() and ((prev >= 0) & (prev <= 1)).all()):
            raise ValueError("previous_confidence must hold probabilities in [0, 1]")
    return conf, ok, age, prev


def _dispersion(x, ok, age, decay, prior):
    """How much more the answers scatter than the binomial noise of the map says.

    Each batch (one value of ``age``) that has older answers is predicted by the map fitted
    on the older ones only (as the estimate of its round was made), and its standardised
    miss ``(right - expected)**2 / variance`` is a one-degree-of-freedom chi-square when
    nothing drifts. Their mean, shrunk towards 1 by ``_DISPERSION_PRIOR`` pseudo-batches,
    is the factor by which the variance is multiplied (never below 1).
    """
    chis = []
    for a in np.unique(age):
        older = age > a
        if not older.any():
            continue
        w, _ = _platt_fit(x[older], ok[older], decay ** (age[older] - a - 1), prior)
        now = age == a
        q = expit(w[0] * x[now] + w[1])
        chis.append((ok[now].sum() - q.sum()) ** 2 / max(float((q * (1 - q)).sum()), 1e-9))
    phi = (_DISPERSION_PRIOR + sum(chis)) / (_DISPERSION_PRIOR + len(chis))
    return max(1.0, float(phi))


def accuracy_interval(proba, *, batch_confidence=None, batch_correct=None, batch_age=None,
                      previous_confidence=None, level=0.9, decay=0.6, prior=1.0,
                      dispersion=True):
    """The label-free accuracy estimate on the pool, recalibrated on fresh labels, with an interval.

    A top-class probability ``c`` is mapped to the chance that the prediction is right,
    ``sigmoid(a * logit(c) + b)``, with ``(a, b)`` fitted (Platt scaling, a MAP fit) on the
    model's *out-of-sample answers*: for each image labelled since the first round, the
    top-class probability and the correctness of the model of the round *before* its label
    was known (``batch_confidence``, ``batch_correct``). The estimate is the mean of these
    chances over the pool:

    * of the **previous model's** confidences (``previous_confidence``), when given with
      answers: the map was fitted on that model's answers, so it is applied to the model it
      describes, and its accuracy on the pool stands for the current one's. Applying the
      map to the current model's confidences instead assumes that the link between
      confidence and correctness carries over to a model trained on more labels; on
      simulated sessions it does not (between rounds 30-50% of the pool's predictions
      change), and the lagged estimate was the more accurate (median error 8.2 against
      8.7 points on the two sets it was chosen on). It lags a model that improves fast:
      its error is then mostly a few points too low;
    * of the current model's confidences otherwise. With no answer at all, ``a = 1, b = 0``:
      the estimate is the mean top-class probability (:func:`estimated_accuracy`).

    * **Selection.** A query strategy labels the images it finds hard (or typical), so the
      raw accuracy of the answers is biased. Conditioning on the confidence corrects for
      this: ``P(right | confidence)`` is learnt from the answers and averaged over the
      pool's confidences (exact when the strategy picks images through the model's
      confidence only, approximate for coverage strategies; DropQuery's picks are wrong
      more often than their confidence says: on one simulated set the estimate was about
      17 points too low under it).
    * **Old answers** come from weaker models: each answer weighs ``decay ** age``
      (``batch_age``: 0 for the batch labelled last, 1 for the one before, ...).
    * **Few answers**: a Gaussian prior of precision ``prior`` on ``(a - 1, b)`` pulls
      towards a calibrated model, so a handful of answers moves the estimate only a little.

    The interval adds the uncertainty of the fit (its Laplace approximation, carried to the
    mean by the delta method) and the sampling of the pool (``sum q_i (1 - q_i) / n**2``).
    With ``dispersion=True`` it also accounts for the model changing between rounds: each
    batch of answers is compared with what the map fitted on the older answers expected
    of it, and when batches miss by more than binomial noise (the map drifts from round to
    round) the variance is multiplied by that overdispersion (a quasi-likelihood
    dispersion, prequential; never below 1). Measured on simulated sessions on four image
    sets (``benchmarks/estimate_eval.py``, :doc:`/user_guide/protocol_results`): the
    interval covers the truth in 91% of rounds on the two sets its settings were chosen
    on and 87% on the two held out (79% on the worst set), but with ten labels per round
    the estimate is off by a median of 8-10 points and its interval is about 45 points
    wide: a rough guide, not a measurement.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        The current model's probabilities on the unlabelled pool.
    batch_confidence : array-like of shape (n_answers,), optional
        Top-class probability of the model of the round before, on each image labelled
        since (out-of-sample answers; all rounds so far, or the last batch only).
    batch_correct : array-like of shape (n_answers,), optional
        Whether that model's prediction was right (same rows).
    batch_age : array-like of shape (n_answers,), optional
        Rounds since each answer was given (non-negative); default all 0 (equal weights,
        one batch).
    previous_confidence : array-like of shape (n_samples,), optional
        Top-class probability of the previous round's model on the same pool rows as
        ``proba`` (the model whose answers have age 0). None: the map is applied to the
        current model's confidences.
    level : float, default=0.9
        Nominal level of the normal quantile used, in (0, 1).
    decay : float, default=0.6
        Weight of an answer per round of age, in (0, 1]. 1: all answers weigh the same.
    prior : float, default=1.0
        Precision of the prior towards a calibrated model (> 0).
    dispersion : bool, default=True
        Widen the interval by the answers' overdispersion between batches (see above).
        False: binomial noise of the fit and of the pool only.

    Returns
    -------
    estimate, low, high : float
        The estimate and the interval, clipped to [0, 1].

    Raises
    ------
    ValueError
        If ``proba`` is not a valid probability array, if only one of
        ``batch_confidence`` and ``batch_correct`` is given, or if they (or ``batch_age``,
        ``previous_confidence``) differ in length or hold values out of range.

    References
    ----------
    J. Platt. Probabilistic outputs for support vector machines and comparisons to
    regularized likelihood methods. Advances in Large Margin Classifiers, 1999.

    P. McCullagh and J. A. Nelder. Generalized Linear Models, 2nd ed., section 4.5
    (over-dispersion). Chapman & Hall, 1989.

    Examples
    --------
    >>> from skpeal.stopping import accuracy_interval
    >>> proba = [[0.7, 0.3]] * 100
    >>> est, low, high = accuracy_interval(proba)     # no answer yet: the prior only
    >>> round(est, 3), round(low, 3), round(high, 3)
    (0.7, 0.241, 1.0)
    >>> right = [True] * 19 + [False]                 # 19 of 20 fresh answers right
    >>> est, low, high = accuracy_interval(proba, batch_confidence=[0.7] * 20,
    ...                                    batch_correct=right)
    >>> round(est, 3), round(low, 3), round(high, 3)
    (0.908, 0.805, 1.0)
    >>> est, low, high = accuracy_interval(           # the previous model was less sure
    ...     proba, batch_confidence=[0.6] * 20, batch_correct=right,
    ...     previous_confidence=[0.6] * 100)
    >>> round(est, 3), round(low, 3), round(high, 3)
    (0.881, 0.768, 0.995)
    """
    p = check_proba(proba)
    if len(p) == 0:
        raise ValueError("proba has no row: the pool is empty, there is nothing to estimate")
    level = check_real("level", level, 0.0, 1.0, closed="neither")
    decay = check_real("decay", decay, 0.0, 1.0, closed="right")
    prior = check_real("prior", prior, 0.0, math.inf, closed="neither")
    if not isinstance(dispersion, (bool, np.bool_)):
        raise ValueError(f"dispersion must be True or False, got {dispersion!r}")
    conf, ok, age, prev = _check_answers(len(p), batch_confidence, batch_correct, batch_age,
                                         previous_confidence)
    x = _logit(conf)
    w, hess = _platt_fit(x, ok, decay ** age, prior)
    target = prev if (prev is not None and conf.size) else p.max(axis=1)
    X = np.column_stack([_logit(target), np.ones(len(p))])
    q = expit(X @ w)
    est = float(q.mean())
    grad = (X * (q * (1 - q))[:, None]).mean(axis=0)
    var = float(grad @ np.linalg.solve(hess, grad)) + float((q * (1 - q)).sum()) / len(q) ** 2
    if dispersion and conf.size:
        var *= _dispersion(x, ok, age, decay, prior)
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(var)
    return est, float(max(0.0, est - half)), float(min(1.0, est + half))


class StoppingCriterion:
    """Common interface of the stopping criteria (not used on its own).

    Subclasses implement ``_signal`` (the value of this update) and ``_decide``.

    Attributes
    ----------
    signals_ : list of float
        The criterion's signal after each update (NaN while it cannot judge yet).
    n_updates_ : int
        Number of updates (rounds) seen.
    should_stop : bool
        The decision of the last update.
    stopped_at_ : int or None
        Index (0-based) of the first update that suggested stopping.
    message : str
        A one-line explanation of the last decision, for a user interface.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget every update (start a new run).

        Returns
        -------
        self : object
            This criterion, with no round recorded.
        """
        self.signals_ = []
        self.n_updates_ = 0
        self.should_stop = False
        self.stopped_at_ = None
        self.message = "no round seen yet"
        return self

    def _record(self, signal, stop, message):
        self.signals_.append(float(signal))
        self.n_updates_ += 1
        self.should_stop = bool(stop)
        if self.should_stop and self.stopped_at_ is None:
            self.stopped_at_ = self.n_updates_ - 1
        self.message = message
        return self.should_stop

    @property
    def signal(self):
        """The last signal (NaN before the criterion can judge)."""
        return self.signals_[-1] if self.signals_ else math.nan


class EstimatedAccuracy(StoppingCriterion):
    """Stop when the calibrated estimate of the pool's accuracy stops rising or is high enough.

    After each round, pass the model's probabilities on the unlabelled pool to
    :meth:`update`. The criterion computes :func:`estimated_accuracy` (the mean maximum
    probability) and suggests stopping when

    * ``target`` is given and the estimate is at least ``target``, or
    * the estimate rose by less than ``min_gain`` over the last ``window`` rounds
      (``e[t] - e[t - window] < min_gain``) in each of the last ``patience`` rounds. The
      first decision of this kind comes after ``window + patience`` updates; with
      ``patience=1`` a single noisy dip of the estimate suggests stopping.

    It trusts the probabilities: use it with a calibrated model (skpeal's
    ``calibration=`` loss), otherwise an over-confident model stops too early. The pool
    shrinks as images are labelled; the estimate is over what is left.

    Parameters
    ----------
    min_gain : float, default=0.005
        Smallest rise of the estimate over ``window`` rounds that still counts as progress,
        in [0, 1]. 0 stops only when the estimate did not rise at all.
    window : int, default=2
        Number of rounds the gain is measured over (>= 1).
    patience : int, default=2
        Number of consecutive rounds the gain must stay below ``min_gain`` (>= 1).
    target : float or None, default=None
        Stop as soon as the estimate reaches this accuracy, in (0, 1]. None: no target.
    floor : float or None, default=None
        Never suggest stopping while the estimate is below this accuracy, in [0, 1]
        (the person's minimum). None: no floor.
    max_half_width : float or None, default=None
        Never suggest stopping *because the estimate stopped rising* while the
        estimate's interval (see :func:`accuracy_interval`) is wider than this on each
        side, nor while it is wider than the estimate's gain over the last ``window``
        rounds plus ``max_half_width``: a plateau inside the noise is no plateau. None:
        intervals are not consulted (the behaviour before intervals existed). The
        labelling session uses 0.03: with ten labels a round the session's intervals are
        about 45 points wide, so it never calls a plateau; looser settings stopped
        simulated sessions about 14 points of accuracy too early
        (:doc:`/user_guide/protocol_results`).

    Attributes
    ----------
    estimates_ : list of float
        The estimate after each update.
    signals_ : list of float
        Same as ``estimates_`` (the value plotted or shown).
    gains_ : list of float
        The gain over the last ``window`` rounds after each update (NaN for the first
        ``window`` updates).
    intervals_ : list of tuple
        ``(low, high)`` of the estimate after each update (``(nan, nan)`` when neither
        probabilities nor an interval were given).
    should_stop, stopped_at_, n_updates_, message
        See :class:`StoppingCriterion`.

    See Also
    --------
    KappaAverage : A criterion that needs no calibration.
    estimated_accuracy : The estimate itself.

    Examples
    --------
    >>> from skpeal.stopping import EstimatedAccuracy
    >>> crit = EstimatedAccuracy(min_gain=0.01, window=1, patience=1)
    >>> crit.update([[0.6, 0.4], [0.5, 0.5]])   # estimate 0.55: too early to judge
    False
    >>> crit.update([[0.8, 0.2], [0.7, 0.3]])   # 0.75: rose by 0.20
    False
    >>> crit.update([[0.8, 0.2], [0.3, 0.7]])   # 0.75 again: no gain
    True
    >>> crit.stopped_at_, crit.estimates_
    (2, [0.55, 0.75, 0.75])
    >>> EstimatedAccuracy(target=0.9).update(estimate=0.93)  # a value computed elsewhere
    True
    """

    def __init__(self, *, min_gain=0.005, window=2, patience=2, target=None, floor=None,
                 max_half_width=None):
        self.min_gain = check_real("min_gain", min_gain, 0.0, 1.0)
        self.window = check_int("window", window, 1)
        self.patience = check_int("patience", patience, 1)
        self.target = (None if target is None else
                       check_real("target", target, 0.0, 1.0, closed="right"))
        self.floor = None if floor is None else check_real("floor", floor, 0.0, 1.0)
        self.max_half_width = (None if max_half_width is None else
                               check_real("max_half_width", max_half_width, 0.0, 1.0))
        super().__init__()

    def reset(self):
        """Forget every update.

        Returns
        -------
        self : object
            This criterion, with no round recorded.
        """
        self.estimates_ = []
        self.gains_ = []
        self.intervals_ = []
        self._below = 0  # consecutive rounds with a gain below min_gain
        return super().reset()

    def update(self, proba=None, *, estimate=None, interval=None):
        """Record one round; return whether to stop.

        Parameters
        ----------
        proba : array-like of shape (n_samples, n_classes), optional
            The model's probabilities on the unlabelled pool after this round's refit.
        estimate : float, optional
            The estimated accuracy itself, when computed elsewhere (e.g. read back from a
            stored session), in [0, 1]. Give exactly one of ``proba`` and ``estimate``.
        interval : tuple of float, optional
            ``(low, high)`` of the estimate (default: :func:`accuracy_interval` of
            ``proba`` without out-of-sample answers; none with ``estimate``).

        Returns
        -------
        should_stop : bool
            Whether the criterion suggests stopping after this round (also in
            ``should_stop``).
        """
        if (proba is None) == (estimate is None):
            raise ValueError("give exactly one of proba (pool probabilities) and estimate")
        if proba is not None:
            value = estimated_accuracy(proba)
            if interval is None:
                interval = accuracy_interval(proba)[1:]
        else:
            value = check_real("estimate", estimate, 0.0, 1.0)
        if interval is None:
            interval = (math.nan, math.nan)
        low, high = (float(v) for v in interval)
        if low > high or (low == low and not (low - 1e-9 <= value <= high + 1e-9)):
            raise ValueError(f"interval ({low}, {high}) must hold the estimate {value}")
        self.estimates_.append(value)
        self.intervals_.append((low, high))
        if len(self.estimates_) > self.window:
            gain = value - self.estimates_[-1 - self.window]
        else:
            gain = math.nan
        self.gains_.append(gain)
        if not math.isnan(gain):
            self._below = self._below + 1 if gain < self.min_gain else 0
        if self.floor is not None and value < self.floor:
            msg = (f"estimated accuracy {value:.3f} is below the floor {self.floor:.3f}: "
                   "keep labelling")
            return self._record(value, False, msg)
        if self.target is not None and value >= self.target:
            msg = f"estimated accuracy {value:.3f} reached the target {self.target:.3f}"
            return self._record(value, True, msg)
        if math.isnan(gain):
            need = self.window + 1 - len(self.estimates_)
            msg = f"estimated accuracy {value:.3f}; {need} more round(s) before judging the gain"
            return self._record(value, False, msg)
        stop = self._below >= self.patience
        half = max(value - low, high - value) if low == low else math.nan
        if (stop and self.max_half_width is not None and half == half
                and (half > self.max_half_width or half > abs(gain) + self.max_half_width)):
            msg = (f"estimated accuracy {value:.3f} gained {gain:+.3f} over the last "
                   f"{self.window} round(s), but the estimate is uncertain by up to "
                   f"{half:.3f}: too noisy to call a plateau")
            return self._record(value, False, msg)
        rel = "below" if self._below else "at least"
        msg = (f"estimated accuracy {value:.3f} gained {gain:+.3f} over the last {self.window} "
               f"round(s), {rel} min_gain {self.min_gain:.3f}")
        if self._below:
            msg += f" ({self._below} of {self.patience} round(s) in a row)"
        return self._record(value, stop, msg)


class KappaAverage(StoppingCriterion):
    """Stop when predictions on a fixed stop set stop changing between rounds.

    After each round, pass the model's predictions on the *same* stop set (any unlabelled
    images, e.g. a few hundred drawn once from the pool) to :meth:`update`. The criterion
    computes Cohen's kappa (:func:`sklearn.metrics.cohen_kappa_score`) between this
    round's and the previous round's predictions and suggests stopping when the mean of
    the last ``window`` kappas is at least ``threshold``. It needs no calibration and no
    label.

    As in Bloodgood & Vijay-Shanker (2009). small-text's ``KappaAverage`` tests the mean
    *change* of consecutive kappas instead; this one tests the mean kappa, as the paper
    does. Two identical prediction vectors have kappa 1 (scikit-learn returns NaN when
    both use a single class).

    Parameters
    ----------
    threshold : float, default=0.99
        Mean agreement above which predictions count as stable, in (0, 1].
    window : int, default=3
        Number of consecutive kappas averaged (>= 1); the first decision comes after
        ``window + 1`` updates.
    classes : array-like or None, default=None
        The class labels, passed to ``cohen_kappa_score(labels=...)``. None: the labels
        that occur in the two prediction vectors.

    Attributes
    ----------
    kappas_ : list of float
        Kappa between each round and the previous one (one fewer than the updates).
    signals_ : list of float
        The mean of the last ``window`` kappas after each update (NaN before there are
        ``window`` of them).
    should_stop, stopped_at_, n_updates_, message
        See :class:`StoppingCriterion`.

    See Also
    --------
    EstimatedAccuracy : A criterion on the calibrated probabilities.

    Examples
    --------
    >>> from skpeal.stopping import KappaAverage
    >>> crit = KappaAverage(threshold=0.9, window=2)
    >>> crit.update(["cat", "dog", "dog", "cat"])
    False
    >>> crit.update(["cat", "cat", "dog", "cat"])   # one prediction changed: kappa 0.5
    False
    >>> crit.update(["cat", "cat", "dog", "cat"])   # mean of (0.5, 1.0) = 0.75
    False
    >>> crit.update(["cat", "cat", "dog", "cat"])   # mean of (1.0, 1.0)
    True
    >>> crit.kappas_
    [0.5, 1.0, 1.0]
    """

    def __init__(self, *, threshold=0.99, window=3, classes=None):
        self.threshold = check_real("threshold", threshold, 0.0, 1.0, closed="right")
        self.window = check_int("window", window, 1)
        if classes is not None:
            classes = np.asarray(classes)
            if classes.ndim != 1 or len(classes) < 1:
                raise ValueError(f"classes must be a non-empty 1-D list, got shape {classes.shape}")
            if len(np.unique(classes)) != len(classes):
                raise ValueError("classes must not repeat a label")
        self.classes = classes
        super().__init__()

    def reset(self):
        """Forget every update.

        Returns
        -------
        self : object
            This criterion, with no round recorded.
        """
        self.kappas_ = []
        self._last = None
        return super().reset()

    def update(self, predictions):
        """Record one round's predictions on the stop set; return whether to stop.

        Parameters
        ----------
        predictions : array-like of shape (n_stop,)
            Predicted labels on the stop set, in the same order every round (e.g.
            ``model.predict(X_stop)``).

        Returns
        -------
        should_stop : bool
            Whether the criterion suggests stopping after this round (also in
            ``should_stop``).
        """
        pred = np.asarray(predictions)
        if pred.ndim != 1 or len(pred) == 0:
            raise ValueError(
                f"predictions must be a non-empty 1-D array of labels, got shape {pred.shape}"
            )
        if self._last is not None and len(pred) != len(self._last):
            raise ValueError(
                f"predictions have {len(pred)} entries but the previous round had "
                f"{len(self._last)}: give predictions on the same stop set every round"
            )
        if self.classes is not None:
            unknown = np.setdiff1d(pred, self.classes)
            if unknown.size:
                raise ValueError(f"predictions contain labels not in classes: {unknown[:5]}")
        previous, self._last = self._last, pred.copy()
        if previous is None:
            return self._record(math.nan, False, "first round: nothing to compare with yet")
        self.kappas_.append(self._kappa(previous, pred))
        if len(self.kappas_) < self.window:
            need = self.window - len(self.kappas_)
            msg = f"kappa {self.kappas_[-1]:.3f}; {need} more round(s) before judging"
            return self._record(math.nan, False, msg)
        mean = float(np.mean(self.kappas_[-self.window:]))
        stop = mean >= self.threshold
        rel = "at least" if stop else "below"
        msg = (f"mean kappa over the last {self.window} round(s) is {mean:.3f}, {rel} "
               f"threshold {self.threshold:.3f}")
        return self._record(mean, stop, msg)

    def _kappa(self, a, b):
        if np.array_equal(a, b):
            return 1.0  # perfect agreement (scikit-learn gives 0/0 for a single class)

        labels = None if self.classes is None else self.classes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(cohen_kappa_score(a, b, labels=labels))
