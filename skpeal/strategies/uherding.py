"""Uncertainty Herding: one greedy coverage objective for low and high label budgets.

Uncertainty Herding (UHerding; Bae, Sutherland and Oliveira, "Uncertainty Herding: One
Active Learning Method for All Label Budgets", ICLR 2025; the authors' code is
``wkgong/uncertainty_herding``, ``deep-al/pycls/al/uherding.py``) greedily maximises the
*uncertainty coverage* of the pool,

.. math::

    \\frac{1}{N} \\sum_j u_j \\, \\max_{i \\in L} k(x_i, x_j),
    \\qquad k(x, x') = \\exp(-\\lVert x - x' \\rVert^2 / \\delta^2),

over the labelled set ``L`` grown one pick at a time, where ``u_j`` is the model's
uncertainty about pool row ``j`` (0 for labelled rows) and the features are
L2-normalised. Each pick is the pool row with the largest gain
``mean_j u_j max(k(x, x_j) - m_j, 0)``, ``m_j`` the best kernel value between row ``j``
and the labelled or already picked rows. With uniform ``u`` this is MaxHerding
(:func:`~skpeal.strategies.lowbudget.maxherding_select`, Bae et al., ECCV 2024); as the
kernel narrows it tends to uncertainty sampling (the paper's argument).

The authors' defaults (their README's command ``-a uherding_margin -s true -p true``) are
followed:

* the uncertainty is the margin, ``1 - (p_1 - p_2)`` of the temperature-scaled
  probabilities (``measure="margin"``; ``"entropy"`` and ``"conf"`` as in their code);
* before the first label the weights are all 1 (the first batch is MaxHerding's);
* the kernel width ``delta`` is adaptive: the smallest distance between two labelled rows
  (1.0, their ``--delta`` default, while fewer than two distinct labelled rows exist).

Deviations, documented here and in the user guide:

* **Temperature.** The authors fit a temperature on 30% of the labelled set with a copy
  of the model retrained on the other 70%, every round. skpeal's strategies never retrain
  the model; ``temperature`` is a number (default 1.0: the classifier's own
  probabilities). ``skpeal run``'s ``calibrated-uherding`` trains the model with skpeal's
  calibration loss instead, a different route to calibrated weights (not measured here).
* **Candidates.** The authors draw a random subset of at most 35,000 unlabelled rows as
  candidates; here every pool row is a candidate (exact, deterministic up to ties).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import pairwise_distances

from .. import _pool, _validation
from ._registry import register_strategy
from ._uncertainty import entropy_scores, least_confidence_scores, margin_scores
from .lowbudget import _argmax, _check_X, _impl, _kmeans_seed, _pool_and_labeled, _unit

__all__ = ["uherding_uncertainty", "uherding_delta", "uherding_select", "uherding_sampling"]

#: The authors' uncertainty measures: the strategies' own score functions.
_MEASURES = {"margin": margin_scores, "entropy": entropy_scores,
             "conf": least_confidence_scores}


def uherding_uncertainty(proba, *, measure="margin", temperature=1.0):
    """The uncertainty weights of Uncertainty Herding, higher = more uncertain.

    The probabilities are temperature-scaled (``softmax(log p / T)``, the same as dividing
    the logits by ``T``), then measured as in the authors' code, with the strategies' own
    score functions: ``margin`` is ``1 - (p_1 - p_2)``
    (:func:`~skpeal.strategies.margin_scores`), ``entropy`` is ``-sum p log p``
    (:func:`~skpeal.strategies.entropy_scores`; the authors add 1e-8 inside the log, which
    changes each class's term by at most 1e-8) and ``conf`` is ``1 - p_1``
    (:func:`~skpeal.strategies.least_confidence_scores`).

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities (rows summing to 1).
    measure : {"margin", "entropy", "conf"}, default="margin"
        The uncertainty measure (the authors' default is ``"margin"``).
    temperature : float, default=1.0
        Temperature ``T > 0``; above 1 flattens the weights towards MaxHerding's uniform
        weights, below 1 sharpens them.

    Returns
    -------
    uncertainty : ndarray of shape (n_samples,)
        Non-negative weights.

    Examples
    --------
    >>> import numpy as np
    >>> from skpeal.strategies.uherding import uherding_uncertainty
    >>> uherding_uncertainty(np.array([[0.5, 0.5], [0.9, 0.1]])).round(3).tolist()
    [1.0, 0.2]
    """
    proba = _validation.check_proba(proba)
    measure = _validation.check_choice("measure", measure, tuple(_MEASURES))
    temperature = _validation.check_real("temperature", temperature, 0.0, np.inf,
                                         closed="neither")
    if temperature != 1.0:
        logits = np.log(np.clip(proba, 1e-300, None)) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
    return _MEASURES[measure](proba)


def uherding_delta(X_labeled):
    """The adaptive kernel width: the smallest distance between two labelled rows.

    Parameters
    ----------
    X_labeled : array-like of shape (n_labeled, n_features) or None
        Features of the labelled rows (L2-normalised by the caller, as in
        :func:`uherding_select`).

    Returns
    -------
    delta : float
        The smallest positive pairwise distance, or 1.0 (the authors' default) when
        fewer than two distinct labelled rows exist.
    """
    if X_labeled is None or np.size(X_labeled) == 0:
        return 1.0
    d = pairwise_distances(_check_X(X_labeled, "X_labeled"))
    d = d[np.tril_indices(d.shape[0], -1)]
    d = d[d > 0]
    return float(d.min()) if d.size else 1.0


def uherding_select(X_pool, X_labeled, n, *, uncertainty=None, delta=None,
                    random_state=None):
    """Uncertainty Herding's greedy selection on feature arrays.

    Parameters
    ----------
    X_pool : array-like of shape (n_pool, n_features)
        Features of the unlabelled pool (L2-normalised here).
    X_labeled : array-like of shape (n_labeled, n_features) or None
        Features of the labelled rows (L2-normalised here).
    n : int
        Rows to pick.
    uncertainty : array-like of shape (n_pool,), optional
        Non-negative weight of each pool row (:func:`uherding_uncertainty`); default all
        ones, which is MaxHerding.
    delta : float, optional
        Kernel width, ``k = exp(-||x - x'||^2 / delta^2)``; default
        :func:`uherding_delta` of the normalised labelled rows.
    random_state : None, int or numpy.random.Generator, default=None
        Breaks ties.

    Returns
    -------
    indices : ndarray of shape (n,)
        Picked pool rows, in pick order.
    scores : ndarray of shape (n,)
        The uncertainty-coverage gain of each pick (mean over pool and labelled rows,
        as in the authors' code).
    """
    Xp = _unit(_check_X(X_pool, "X_pool"))
    n = _validation.check_n_instances(n, Xp.shape[0])
    rng = _validation.as_generator(random_state)
    Xl = None
    if X_labeled is not None and np.size(X_labeled):
        Xl = _unit(_check_X(X_labeled, "X_labeled"))
        if Xl.shape[1] != Xp.shape[1]:
            raise ValueError(f"X_labeled has {Xl.shape[1]} features, X_pool {Xp.shape[1]}")
    if uncertainty is None:
        u = np.ones(Xp.shape[0])
    else:
        u = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
        if u.shape[0] != Xp.shape[0] or not np.isfinite(u).all() or (u < 0).any():
            raise ValueError("uncertainty must hold one finite, non-negative value per pool "
                             f"row ({Xp.shape[0]}), got shape {u.shape}")
    delta = uherding_delta(Xl) if delta is None else _validation.check_real(
        "delta", delta, 0.0, np.inf, closed="neither")
    K = np.exp(-pairwise_distances(Xp, metric="sqeuclidean") / delta**2)
    m = np.zeros(Xp.shape[0])
    n_total = Xp.shape[0]
    if Xl is not None:
        n_total += Xl.shape[0]
        m = np.exp(-pairwise_distances(Xp, Xl, metric="sqeuclidean") / delta**2).max(axis=1)
    picked, scores = [], []
    for _ in range(n):
        gain = (np.maximum(K - m[None, :], 0.0) @ u) / n_total
        gain[picked] = -np.inf
        i = _argmax(gain, rng)
        picked.append(i)
        scores.append(float(gain[i]))
        m = np.maximum(m, K[:, i])
    return np.asarray(picked, dtype=np.intp), np.asarray(scores, dtype=np.float64)


def uherding_sampling(classifier, X_pool, n_instances=1, *, random_state=None,
                      measure="margin", temperature=1.0, delta=None, **kwargs):
    """Uncertainty Herding on the classifier's image features and probabilities.

    One model pass over the pool gives the probabilities (the weights,
    :func:`uherding_uncertainty`) and the features; the labelled set's features set the
    adaptive kernel width (:func:`uherding_delta`) and the starting coverage. Without a
    labelled set the weights are uniform (the authors' rule), so the first batch is
    MaxHerding's. See :mod:`skpeal.strategies.uherding` for the deviations from the
    authors' code.

    Parameters
    ----------
    classifier : estimator or modAL learner
        Fitted classifier. Features as for :func:`skpeal.strategies.coreset_sampling`
        (L2-normalised here).
    X_pool : array-like of shape (n_samples, ...)
        The unlabelled pool.
    n_instances : int, default=1
        Number of rows to pick, in ``[1, n_samples]``.
    random_state : None, int or numpy.random.Generator, default=None
        Breaks ties.
    measure : {"margin", "entropy", "conf"}, default="margin"
        Uncertainty measure.
    temperature : float, default=1.0
        Temperature of the probabilities.
    delta : float, optional
        Kernel width (default: adaptive, :func:`uherding_delta`).
    **kwargs : dict
        ``X_labeled`` / ``y_labeled`` (or a modAL learner's training data): the labelled
        set, optional. Other keywords are ignored.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices, in pick order.
    scores : ndarray of shape (n_instances,)
        The uncertainty-coverage gain of each pick.
    """
    n = _validation.check_n_instances(n_instances, _pool.num_samples(X_pool))
    proba, feats, lab, _ = _pool_and_labeled(classifier, X_pool, kwargs, "uherding_sampling")
    u = None if lab is None else uherding_uncertainty(proba, measure=measure,
                                                      temperature=temperature)
    if lab is None:  # still check the parameters, so a bad one fails at round 0
        uherding_uncertainty(proba[:1], measure=measure, temperature=temperature)
    return uherding_select(feats, lab, n, uncertainty=u, delta=delta,
                           random_state=_kmeans_seed(random_state))


# Needs no labelled set (uniform weights before the first label); covers by itself, so
# never wrapped in PCB; on Ray it runs on the gathered pool (exact).
register_strategy("uherding", _impl(uherding_sampling), needs=("proba", "features"),
                  pcb=False, query=uherding_sampling)
