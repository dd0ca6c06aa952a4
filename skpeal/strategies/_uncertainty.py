"""Uncertainty sampling and random sampling: score functions and their query functions.

A score function (``entropy_scores``) is kept apart from its query function
(``entropy_sampling``), as in modAL; each strategy is registered in
:mod:`skpeal.strategies._registry` by one :func:`register_strategy` call at the end.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import entr

from .. import _pool, _validation
from ._registry import register_strategy, run_impl, score_impl


def check_proba(proba, *, name="proba"):
    """Validate a probability array and return it as float64.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Rows of class probabilities.
    name : str, default="proba"
        Name used in error messages.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes), dtype float64
        The validated array, tiny negative round-off clipped to 0 (rows of a
        low-precision input, e.g. float16, renormalised to sum to 1).

    Raises
    ------
    ValueError
        If the array is not 2-D, has no column, is not numeric, contains NaN or
        infinity, has entries outside [0, 1] or rows that do not sum to 1 (absolute
        tolerance 1e-4, or the input dtype's rounding times the number of classes when
        larger, e.g. for float16).
    """
    return _validation.check_proba(proba, name=name)



# ------------------------------------------------------------------------ score functions
def entropy_scores(proba):
    """Predictive entropy of each row, ``-sum_c p_c log p_c`` (natural log).

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities, rows summing to 1.

    Returns
    -------
    scores : ndarray of shape (n_samples,)
        Values in ``[0, log(n_classes)]``; higher = more uncertain.
    """
    p = check_proba(proba)
    return np.clip(entr(p).sum(axis=1), 0.0, math.log(p.shape[1]))


def margin_scores(proba):
    """Margin uncertainty ``1 - (p_(1) - p_(2))`` of each row (top-two probabilities).

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities, rows summing to 1.

    Returns
    -------
    scores : ndarray of shape (n_samples,)
        Values in ``[0, 1]``; higher = smaller margin = more uncertain. With a single
        class the score is 0.
    """
    p = check_proba(proba)
    if p.shape[1] == 1:
        return np.zeros(p.shape[0])
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return np.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)


def least_confidence_scores(proba):
    """Least-confidence uncertainty ``1 - max_c p_c`` of each row.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities, rows summing to 1.

    Returns
    -------
    scores : ndarray of shape (n_samples,)
        Values in ``[0, 1 - 1/n_classes]``; higher = more uncertain.
    """
    p = check_proba(proba)
    return np.clip(1.0 - p.max(axis=1), 0.0, 1.0 - 1.0 / p.shape[1])


_UNCERTAINTY_DOC = """Pick the ``n_instances`` pool rows with the highest {what}.

    Works with any classifier that has ``predict_proba`` (one call over the pool), including
    a modAL learner and plain scikit-learn estimators.

    Parameters
    ----------
    classifier : estimator or modAL learner
        Fitted; ``classifier.predict_proba(X_pool)`` must return rows summing to 1.
    X_pool : array-like of shape (n_samples, ...)
        The unlabelled pool.
    n_instances : int, default=1
        Number of rows to pick, in ``[1, n_samples]``.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the generator that breaks ties between equal scores.
    **kwargs : dict
        Ignored (modAL may forward keywords meant for other strategies).

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices, most informative first.
    scores : ndarray of shape (n_instances,)
        ``{score}`` of the picked rows.

    See Also
    --------
    {score} : The score used here.
    class_balanced : PCB class balancing around this strategy.
    """


# ------------------------------------------------------------------------ query functions
def random_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """Pick ``n_instances`` pool rows uniformly at random (no model pass).

    Parameters
    ----------
    classifier : object
        Unused; present for modAL's signature.
    X_pool : array-like of shape (n_samples, ...)
        The unlabelled pool.
    n_instances : int, default=1
        Number of rows to pick, in ``[1, n_samples]``.
    random_state : None, int or numpy.random.Generator, default=None
        Seed of the local generator.
    **kwargs : dict
        Ignored.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices.
    scores : ndarray of shape (n_instances,)
        All zeros: random sampling does not score.
    """
    return run_impl(_random_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]




def _random_impl(classifier, X_pool, n, rng, **_):
    idx = rng.choice(_pool.num_samples(X_pool), size=n, replace=False)
    return idx, np.zeros(n), None


def entropy_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    return run_impl(_entropy_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def margin_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    return run_impl(_margin_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def least_confidence_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    return run_impl(_least_conf_impl, classifier, X_pool, n_instances, random_state,
                    kwargs)[:2]


_entropy_impl = score_impl(entropy_scores)
_margin_impl = score_impl(margin_scores)
_least_conf_impl = score_impl(least_confidence_scores)
entropy_sampling.__doc__ = _UNCERTAINTY_DOC.format(
    what="predictive entropy", score="entropy_scores"
)
margin_sampling.__doc__ = _UNCERTAINTY_DOC.format(
    what="margin score ``1 - (p1 - p2)`` (the smallest margins)", score="margin_scores"
)
least_confidence_sampling.__doc__ = _UNCERTAINTY_DOC.format(
    what="least-confidence score ``1 - max p``", score="least_confidence_scores"
)

register_strategy("random", _random_impl, needs=(), query=random_sampling)
register_strategy("entropy", _entropy_impl, score=entropy_scores, topk=True,
                  query=entropy_sampling)
register_strategy("margin", _margin_impl, score=margin_scores, topk=True,
                  query=margin_sampling)
register_strategy("least-confidence", _least_conf_impl, score=least_confidence_scores,
                  topk=True, query=least_confidence_sampling)
