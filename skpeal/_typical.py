"""Typical picks that cover a set of feature vectors: TypiClust, without torch.

:func:`typiclust_select` and the helpers the low-budget selectors share
(:mod:`skpeal.strategies.lowbudget` imports them from here). This module imports numpy and
scikit-learn only, so a new labelling project can pick a first batch that covers its
images (``init="pixels"``, :mod:`skpeal.labeling._project`) before torch is loaded.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from . import _validation

__all__ = ["typiclust_select"]


# --------------------------------------------------------------------------- helpers
def _kmeans_seed(random_state):
    """An int seed for scikit-learn's KMeans: the int itself, else drawn from the generator."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return int(_validation.as_generator(random_state).integers(2**31 - 1))


def _check_X(X, name="X"):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D feature array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return X


def _labeled_mask(n_total, labeled):
    mask = np.zeros(n_total, dtype=bool)
    if labeled is not None:
        labeled = np.asarray(labeled)
        if labeled.dtype == bool:
            if labeled.shape != (n_total,):
                raise ValueError(f"a boolean labeled mask must have shape ({n_total},)")
            return labeled.copy()
        labeled = labeled.astype(np.intp).reshape(-1)
        if labeled.size and (labeled.min() < 0 or labeled.max() >= n_total):
            raise ValueError(f"labeled indices must be in [0, {n_total})")
        mask[labeled] = True
    return mask


def _argmax(values, rng):
    """Index of the largest value, ties broken by ``rng``."""
    best = np.flatnonzero(values == np.max(values))
    return int(best[rng.integers(best.size)]) if best.size > 1 else int(best[0])


def _check_n(n, n_candidates):
    return _validation.check_n_instances(n, n_candidates)


# ------------------------------------------------------------------------- TypiClust
def _typicality(X, members, k):
    """1 / mean distance to the ``k`` nearest other members (scikit-activeml's formula)."""
    if members.size == 1:
        return np.ones(1)
    k = min(members.size - 1, k)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X[members]).kneighbors(X[members])
    return 1.0 / (dist.sum(axis=1) / k + 1e-7)


def typiclust_select(X, labeled, n, *, k=20, random_state=None):
    """TypiClust (Hacohen et al., 2022): the most typical image of each uncovered cluster.

    ``X`` (labelled and unlabelled rows) is clustered by k-means into ``n_labeled + n``
    clusters; the ``n`` largest clusters without a labelled row give one pick each: the
    row of highest typicality (inverse mean distance to its ``k`` nearest neighbours in
    its cluster). When fewer uncovered clusters remain, the most typical remaining rows
    of the largest clusters are taken.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features of every row (labelled ones included).
    labeled : array-like of int or bool mask
        The labelled rows (never picked).
    n : int
        Rows to pick, at most the number of unlabelled rows.
    k : int, default=20
        Neighbours of the typicality.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds k-means (an int is passed to it unchanged) and tie breaking.

    Returns
    -------
    indices : ndarray of shape (n,)
        Picked rows, in pick order.
    scores : ndarray of shape (n,)
        Their typicality.
    """
    X = _check_X(X)
    lab = _labeled_mask(X.shape[0], labeled)
    n = _check_n(n, int((~lab).sum()))
    k = _validation.check_int("k", k, 1)
    rng = _validation.as_generator(random_state)
    n_clusters = min(X.shape[0], int(lab.sum()) + n)
    km = KMeans(n_clusters=n_clusters, random_state=_kmeans_seed(random_state))
    cl = km.fit_predict(X)
    sizes = np.bincount(cl, minlength=n_clusters).astype(float)
    sizes[np.unique(cl[lab])] = 0
    picked, scores = [], []
    free = ~lab
    for _ in range(n):
        if sizes.max() > 0:
            c = _argmax(sizes, rng)
            members = np.flatnonzero((cl == c) & free)
            sizes[c] = 0
        else:  # every cluster covered: most typical free row of the whole pool
            members = np.flatnonzero(free)
        typ = _typicality(X, members, k)
        j = _argmax(typ, rng)
        picked.append(members[j])
        scores.append(typ[j])
        free[members[j]] = False
    return np.asarray(picked, dtype=np.intp), np.asarray(scores, dtype=np.float64)
