"""Strategies on features: BADGE (gradient embeddings), core-set and feature distance.

Probabilities and features come from one model pass over the pool (see
:mod:`skpeal.strategies` for where features come from); coreset and featdist also embed
the labelled set. Each is registered by one :func:`register_strategy` call at the end.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _pool
from ._registry import register_strategy, run_impl


def badge_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """BADGE: k-means++ seeding on gradient embeddings (Ash et al., 2020).

    Each pool row gets the embedding ``f(x) * (1[c = yhat] - p_c)`` for every class ``c``
    (the last-layer cross-entropy gradient at the predicted label, up to sign), flattened to
    length ``n_classes * n_features``. Seeding as in BADGE's code: the row with the largest
    embedding norm first, then each next row drawn with probability proportional to its
    squared distance to the nearest row picked so far (k-means++), which favours diverse,
    high-magnitude rows. Probabilities and features come from one model pass (see the
    module docstring for where features come from). The labelled set is not used.

    Parameters
    ----------
    classifier : estimator or modAL learner
        Fitted probabilistic classifier.
    X_pool : array-like of shape (n_samples, ...)
        The unlabelled pool.
    n_instances : int, default=1
        Number of rows to pick, in ``[1, n_samples]``.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the D^2 draws and tie breaking.
    **kwargs : dict
        Ignored.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices in pick order.
    scores : ndarray of shape (n_instances,)
        Norm of each picked row's gradient embedding.

    Notes
    -----
    The embedding matrix is never built: squared distances between embeddings are
    computed from the probabilities and the features (``<a (x) f, b (x) g> = <a, b> <f, g>``),
    so memory is that of the features and time ``O(n_instances * n_samples *
    (n_classes + n_features))``.
    """
    return run_impl(_badge_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _badge_impl(classifier, X_pool, n, rng, **_):
    n_pool = _pool.num_samples(X_pool)
    proba, feats = _pool.proba_and_features(classifier, X_pool, n_pool)
    # g_i = a_i (x) f_i with a_i = 1[c = yhat_i] - p_i, for all rows at once (no batching,
    # so no partial-batch row mix-up). <g_i, g_j> = <a_i, a_j> <f_i, f_j>: norms and
    # distances come from the two factors, without the (n, C * d) embedding matrix.
    coef = -proba.astype(np.float64)
    coef[np.arange(n_pool), proba.argmax(axis=1)] += 1.0
    feats = np.asarray(feats, dtype=np.float64)
    sq = (coef * coef).sum(axis=1) * (feats * feats).sum(axis=1)
    norms = np.sqrt(sq)
    idx = _badge_seeding(coef, feats, sq, n, rng)
    return idx, norms[idx], proba


def _badge_seeding(coef, feats, sq, n, rng):
    """BADGE's k-means++ seeding (Ash et al., ``init_centers``): the largest-norm row first,
    then each next row drawn with probability proportional to its squared distance to the
    nearest row picked so far. Rows at distance 0 of every pick (duplicates, or all-zero
    gradients) are never drawn; when only such rows remain, the rest are filled by norm."""
    n_pool = sq.shape[0]
    picked = np.zeros(n_pool, dtype=bool)
    first = int(_pool.top_k(sq, 1, rng)[0])
    order = [first]
    picked[first] = True
    d2 = np.full(n_pool, np.inf)
    last = first
    while len(order) < n:
        new = sq + sq[last] - 2.0 * (coef @ coef[last]) * (feats @ feats[last])
        d2 = np.minimum(d2, np.maximum(new, 0.0))
        d2[picked] = 0.0
        total = d2.sum()
        if not total > 0.0:
            break
        last = int(rng.choice(n_pool, p=d2 / total))
        order.append(last)
        picked[last] = True
    idx = np.asarray(order, dtype=np.intp)
    if idx.size < n:
        rest = np.flatnonzero(~picked)
        idx = np.concatenate([idx, rest[_pool.top_k(sq[rest], n - idx.size, rng)]])
    return idx


def coreset_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """Core-set selection by k-centre greedy (Sener & Savarese, 2018).

    Repeatedly picks the pool row farthest (Euclidean, in feature space) from the labelled
    set and the rows picked so far. Features: see the module docstring (L2-normalised image
    features for :class:`skpeal.CLIPAdapterClassifier`, flattened inputs otherwise).

    Parameters
    ----------
    classifier : estimator or modAL learner
        Fitted classifier.
    X_pool : array-like of shape (n_samples, ...)
        The unlabelled pool.
    n_instances : int, default=1
        Number of rows to pick, in ``[1, n_samples]``.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the generator that breaks ties between equal distances.
    **kwargs : dict
        ``X_labeled`` (and ``y_labeled``, unused here): the labelled set; defaults to a
        modAL learner's ``X_training``. Other keywords are ignored.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices in pick order.
    scores : ndarray of shape (n_instances,)
        Distance of each pick to its nearest centre at the time it was picked.

    Raises
    ------
    ValueError
        If no labelled set is given or found.
    """
    return run_impl(_coreset_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _coreset_impl(classifier, X_pool, n, rng, *, X_labeled=None, y_labeled=None, **_):
    X_lab, _ = _pool.labeled_set(classifier, X_labeled, y_labeled, need="X",
                                 strategy="coreset_sampling")
    n_pool = _pool.num_samples(X_pool)
    proba, feats = _pool.proba_and_features(classifier, X_pool, n_pool)
    lab = _pool.features(classifier, X_lab)
    if lab.shape[1] != feats.shape[1]:
        raise ValueError(
            f"X_labeled features have {lab.shape[1]} dimensions, the pool's {feats.shape[1]}"
        )
    min_d = _pool.min_sq_dist(feats, lab)
    idx = np.empty(n, dtype=np.intp)
    scores = np.empty(n)
    for t in range(n):
        best = np.flatnonzero(min_d == min_d.max())
        i = best[rng.integers(best.size)] if best.size > 1 else best[0]
        idx[t], scores[t] = i, math.sqrt(max(min_d[i], 0.0))
        min_d = np.minimum(min_d, _pool.sq_dists(feats, feats[i : i + 1])[:, 0])
        min_d[idx[: t + 1]] = -np.inf
    return idx, scores, proba


def featdist_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    """Pick rows far from the labelled mean feature of their predicted class.

    A pool row predicted as class ``c`` scores the Euclidean distance from its feature to
    the mean feature of the labelled samples of class ``c``; the ``n_instances`` largest are
    picked. When ``c`` has no labelled sample, the row scores its distance to the *nearest*
    labelled class mean instead (finite, and comparable with the other scores).

    Parameters
    ----------
    classifier : estimator or modAL learner
        Fitted classifier with ``classes_`` (or a learner whose ``estimator`` has it).
    X_pool : array-like of shape (n_samples, ...)
        The unlabelled pool.
    n_instances : int, default=1
        Number of rows to pick, in ``[1, n_samples]``.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the generator that breaks ties between equal scores.
    **kwargs : dict
        ``X_labeled`` and ``y_labeled``: the labelled set; default to a modAL learner's
        ``X_training`` / ``y_training``. Other keywords are ignored.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices, farthest first.
    scores : ndarray of shape (n_instances,)
        The distances of the picked rows.

    Raises
    ------
    ValueError
        If no labelled set is given or found, or ``y_labeled`` has labels outside
        ``classes_``.
    """
    return run_impl(_featdist_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _featdist_impl(classifier, X_pool, n, rng, *, X_labeled=None, y_labeled=None, **_):
    X_lab, y_lab = _pool.labeled_set(
        classifier, X_labeled, y_labeled, need="Xy", strategy="featdist_sampling"
    )
    classes = _pool.classes(classifier)
    y_idx = _pool.class_index(classes, y_lab)
    n_pool = _pool.num_samples(X_pool)
    proba, feats = _pool.proba_and_features(classifier, X_pool, n_pool)
    if proba.shape[1] != classes.size:
        raise ValueError(f"predict_proba has {proba.shape[1]} columns for {classes.size} classes")
    lab = _pool.features(classifier, X_lab)
    present = np.unique(y_idx)
    means = np.stack([lab[y_idx == c].mean(axis=0) for c in present])
    dist = np.sqrt(_pool.sq_dists(feats, means))  # (n_pool, n_present)
    own = np.full(classes.size, -1, dtype=np.intp)
    own[present] = np.arange(present.size)
    col = own[proba.argmax(axis=1)]
    # Own predicted class when it has labelled samples, else the nearest labelled class mean.
    scores = np.where(col >= 0, dist[np.arange(n_pool), np.maximum(col, 0)], dist.min(axis=1))
    idx = _pool.top_k(scores, n, rng)
    return idx, scores[idx], proba


register_strategy("badge", _badge_impl, needs=("proba", "features", "gradients"),
                  shardable=True, query=badge_sampling)
register_strategy("coreset", _coreset_impl, needs=("proba", "features", "labels"),
                  shardable=True, query=coreset_sampling)
register_strategy("featdist", _featdist_impl, needs=("proba", "features", "labels"),
                  topk=True, query=featdist_sampling)
