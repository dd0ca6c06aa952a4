"""Low-budget query strategies: coverage and typicality on image features.

With a few labels per class, picking *typical* images that *cover* the pool beats picking
the images the model is unsure about (Hacohen et al., ICML 2022; Yehuda et al., NeurIPS
2022); uncertainty wins once the model is decent. This module holds those strategies in
the two layers of :mod:`skpeal.strategies`:

* **selectors**, pure functions over feature arrays (``typiclust_select``,
  ``probcover_select``, ``maxherding_select``, ``dropquery_select``,
  ``classguided_select``) returning ``(indices, scores)``;
* **query functions** with modAL's signature
  ``f(classifier, X_pool, n_instances=1, *, random_state=None, **kw) -> (indices, scores)``
  that take the features from the classifier exactly as the feature strategies of
  :mod:`skpeal.strategies` do (``predict_proba_embed``, ``embed`` or the flattened input),
  and the labelled set from ``X_labeled`` / ``y_labeled`` or a modAL learner. None of them
  *needs* a labelled set: they work for the very first batch.

:func:`auto_sampling` is DropQuery until the labelled set holds ``k_per_class`` (10)
labels per class, then margin sampling with PCB class balancing. On the four measured
sets (Fashion-MNIST, digits, Twemoji groups, NRLetters; up to 10 labels per class, see
the user guide's protocol page) DropQuery beat random labelling on every set, in at least
4 of 5 seeds, and was the best strategy or within 2.3 AULC points of it; class-guided
coverage, the first rule (chosen on the first two sets), was best there but generalised
worse to the other two. The switch to uncertainty beyond 10 labels per class follows the
literature (uncertainty wins once the model is decent), not a measurement of ours.

Each query function is registered in the strategy registry (``skpeal run --strategies
typiclust``, a labelling session's ``strategy="auto"``, the Ray scorer) with ``pcb=False``:
:class:`~skpeal.labeling.ActiveLearningLoop` never wraps them in PCB; they balance, or
cover, by themselves. On Ray they run exactly on the gathered pool (up to the scorer's
``exact_max_rows``) and are refused above it.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from .. import _pool, _validation
from .._typical import (
    _argmax,
    _check_n,
    _check_X,
    _kmeans_seed,
    _labeled_mask,
    _typicality,
    typiclust_select,
)
from . import _linalg
from ._balancing import class_balanced
from ._registry import register_strategy
from ._uncertainty import margin_sampling

__all__ = [
    "typiclust_select",
    "probcover_radius",
    "probcover_select",
    "maxherding_select",
    "dropquery_select",
    "dropout_disagreement",
    "linear_head",
    "median_gamma",
    "classguided_select",
    "typiclust_sampling",
    "probcover_sampling",
    "maxherding_sampling",
    "dropquery_sampling",
    "classguided_sampling",
    "auto_sampling",
    "AUTO_K_PER_CLASS",
]

#: Labels per class at which ``auto`` switches from DropQuery to margin sampling with PCB
#: (its ``k_per_class`` default; the labelling session reads it to plan its picks ahead).
AUTO_K_PER_CLASS = 10


# --------------------------------------------------------------------------- helpers
# (the shared helpers and TypiClust live in skpeal._typical, which needs no torch)


# ------------------------------------------------------------------------- ProbCover
def probcover_radius(X, n_classes, *, purity=0.95, deltas=None, random_state=None):
    """ProbCover's ball radius: the largest ``delta`` whose balls stay ``purity`` pure.

    As in Yehuda et al. (2022): k-means with ``n_classes`` clusters stands in for the
    labels; a ball around a row is pure when every row within ``delta`` is in the same
    cluster; the radius is the largest candidate ``delta`` (increasing) with a fraction
    of pure balls ``>= purity``, stopping at the first that falls below.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features.
    n_classes : int
        Number of classes (k-means clusters), >= 2.
    purity : float, default=0.95
        Required fraction of pure balls, in (0, 1).
    deltas : array-like, optional
        Candidate radii (sorted). Default: ``0.2, 0.4, ..., 2.0`` (scikit-activeml's).
    random_state : None, int or numpy.random.Generator, default=None
        Seeds k-means.

    Returns
    -------
    delta : float
        The radius (the smallest candidate when none is pure enough).
    """
    X = _check_X(X)
    n_classes = _validation.check_int("n_classes", n_classes, 2)
    purity = _validation.check_real("purity", purity, 0.0, 1.0, closed="neither")
    deltas = np.arange(0.2, 2.2, 0.2) if deltas is None else np.sort(np.asarray(deltas, float))
    if deltas.size == 0 or (deltas < 0).any():
        raise ValueError("deltas must be non-empty and non-negative")
    cl = KMeans(n_clusters=min(n_classes, X.shape[0]),
                random_state=_kmeans_seed(random_state)).fit_predict(X)
    nn = NearestNeighbors().fit(X)
    best = float(deltas[0])
    for delta in deltas:
        graph = nn.radius_neighbors_graph(X, radius=float(delta), mode="connectivity").tocoo()
        impure = np.zeros(X.shape[0], dtype=bool)
        impure[graph.row[cl[graph.row] != cl[graph.col]]] = True
        if 1.0 - impure.mean() < purity:
            break
        best = float(delta)
    return best


def probcover_select(X, labeled, n, *, delta, random_state=None):
    """ProbCover (Yehuda et al., 2022): greedy maximum coverage of ``delta``-balls.

    Rows within ``delta`` (Euclidean) of a labelled or picked row are covered; each pick
    is the unlabelled row whose ball holds the most uncovered rows (itself included).
    The neighbourhood graph is sparse (memory grows with the number of close pairs, not
    with ``n_samples**2``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features of every row.
    labeled : array-like of int or bool mask
        The labelled rows.
    n : int
        Rows to pick.
    delta : float
        Ball radius (see :func:`probcover_radius`).
    random_state : None, int or numpy.random.Generator, default=None
        Breaks ties.

    Returns
    -------
    indices : ndarray of shape (n,)
        Picked rows, in pick order.
    scores : ndarray of shape (n,)
        Number of rows each pick newly covered.
    """
    X = _check_X(X)
    lab = _labeled_mask(X.shape[0], labeled)
    n = _check_n(n, int((~lab).sum()))
    delta = _validation.check_real("delta", delta, 0.0, np.inf, closed="left")
    rng = _validation.as_generator(random_state)
    graph = NearestNeighbors().fit(X).radius_neighbors_graph(
        X, radius=delta, mode="connectivity").tocsr().astype(np.int64)
    covered = np.asarray(graph[np.flatnonzero(lab)].sum(axis=0)).ravel() > 0
    free = ~lab
    picked, scores = [], []
    for _ in range(n):
        gain = graph @ (~covered).astype(np.int64)
        gain = np.where(free, gain, -1)
        i = _argmax(gain, rng)
        picked.append(i)
        scores.append(float(gain[i]))
        free[i] = False
        covered[graph[i].indices] = True
    return np.asarray(picked, dtype=np.intp), np.asarray(scores, dtype=np.float64)


# ------------------------------------------------------------------------ MaxHerding
def median_gamma(X):
    """RBF ``gamma = 1 / median squared distance`` (the median heuristic).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Feature rows (at most 1,000 of them, evenly spaced, are compared).

    Returns
    -------
    gamma : float
        ``1 / median`` of the pairwise squared distances (1.0 when it is 0).
    """
    X = _check_X(X)
    sub = X[:: max(1, X.shape[0] // 1000)]
    d = pairwise_distances(sub, metric="sqeuclidean")
    med = np.median(d[np.triu_indices(sub.shape[0], 1)]) if sub.shape[0] > 1 else 1.0
    return 1.0 / med if med > 0 else 1.0


def maxherding_select(X_pool, X_labeled, n, *, gamma=None, random_state=None):
    """MaxHerding (Bae et al., ECCV 2024): greedy maximum of the generalised coverage.

    With an RBF kernel ``K`` on the L2-normalised features, each pick maximises
    ``mean_j max(K(x, x_j) - m_j, 0)`` over the pool, where ``m_j`` is the largest kernel
    value between pool row ``j`` and the labelled or picked rows (scikit-activeml's
    formulation, on the pool).

    Parameters
    ----------
    X_pool : array-like of shape (n_pool, n_features)
        Features of the unlabelled pool.
    X_labeled : array-like of shape (n_labeled, n_features) or None
        Features of the labelled rows.
    n : int
        Rows to pick.
    gamma : float, optional
        RBF width; default the median heuristic on the normalised pool
        (:func:`median_gamma`).
    random_state : None, int or numpy.random.Generator, default=None
        Breaks ties.

    Returns
    -------
    indices : ndarray of shape (n,)
        Picked pool rows, in pick order.
    scores : ndarray of shape (n,)
        The coverage gain of each pick.
    """
    Xp = _check_X(X_pool, "X_pool")
    Xp = Xp / np.maximum(np.linalg.norm(Xp, axis=1, keepdims=True), 1e-12)
    n = _check_n(n, Xp.shape[0])
    rng = _validation.as_generator(random_state)
    gamma = median_gamma(Xp) if gamma is None else _validation.check_real(
        "gamma", gamma, 0.0, np.inf, closed="neither")
    K = np.exp(-gamma * pairwise_distances(Xp, metric="sqeuclidean"))
    m = np.zeros(Xp.shape[0])
    if X_labeled is not None and np.size(X_labeled):
        Xl = _check_X(X_labeled, "X_labeled")
        Xl = Xl / np.maximum(np.linalg.norm(Xl, axis=1, keepdims=True), 1e-12)
        m = np.exp(-gamma * pairwise_distances(Xp, Xl, metric="sqeuclidean")).max(axis=1)
    picked, scores = [], []
    for _ in range(n):
        gain = np.maximum(K - m[None, :], 0).mean(axis=1)
        gain[picked] = -np.inf
        i = _argmax(gain, rng)
        picked.append(i)
        scores.append(float(gain[i]))
        m = np.maximum(m, K[:, i])
    return np.asarray(picked, dtype=np.intp), np.asarray(scores, dtype=np.float64)


# ------------------------------------------------------------------------- DropQuery
def linear_head(features, proba):
    """The linear softmax head ``(W, b)`` that maps ``features`` to ``proba``.

    For a linear-softmax model (a CLIP prompt learner: scaled cosine similarity to fixed
    class features; a logistic regression), ``log proba`` minus its row mean is
    ``features @ W + b`` exactly; least squares recovers ``W`` and ``b`` from the pool
    (exact when the pool has more rows than feature dimensions, a fit otherwise).

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
        The model's features of the pool.
    proba : ndarray of shape (n_samples, n_classes)
        Its probabilities of the same rows.

    Returns
    -------
    W : ndarray of shape (n_features, n_classes)
        The weights.
    b : ndarray of shape (n_classes,)
        The biases.
    """
    logp = np.log(np.clip(proba, 1e-300, None))
    logp -= logp.mean(axis=1, keepdims=True)
    A = np.hstack([features, np.ones((features.shape[0], 1))])
    coef = _linalg.least_squares(A, logp)  # lstsq's solution (faster when safe)
    return coef[:-1], coef[-1]


def dropout_disagreement(X, predict, *, dropout_rate=0.75, n_dropout=5, random_state=None):
    """Fraction of feature-dropout passes whose prediction differs from the plain one.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features.
    predict : callable
        ``predict(features) -> labels``.
    dropout_rate : float, default=0.75
        Fraction of entries zeroed per pass (masks drawn with
        ``numpy.random.RandomState(seed).choice``, as scikit-activeml draws them).
    n_dropout : int, default=5
        Number of passes.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the masks.

    Returns
    -------
    rate : ndarray of shape (n_samples,)
        Values in [0, 1].
    """
    X = _check_X(X)
    mask_rng = np.random.RandomState(_kmeans_seed(random_state))
    y0 = np.asarray(predict(X))
    disagree = np.zeros(X.shape[0])
    for _ in range(n_dropout):
        Xd = X.copy()
        Xd[_linalg.dropout_mask(mask_rng, X.shape, dropout_rate)] = 0  # = choice's draws
        disagree += np.asarray(predict(Xd)) != y0
    return disagree / n_dropout


def dropquery_select(X, predict, n, *, dropout_rate=0.75, n_dropout=5, random_state=None):
    """DropQuery (Gupte et al., TMLR 2024): disagreement under feature dropout, then k-means.

    ``predict`` labels the features as they are and ``n_dropout`` times with a fraction
    ``dropout_rate`` of the entries zeroed (masks drawn as scikit-activeml draws them).
    Rows whose prediction changes in more than half of the dropout passes are the
    candidates (the ``n`` most changeable rows if fewer); k-means with ``n`` clusters on
    the candidates' features gives one pick per centroid: its nearest candidate.

    Parameters
    ----------
    X : array-like of shape (n_pool, n_features)
        Pool features.
    predict : callable
        ``predict(features) -> labels`` (e.g. the argmax of the classifier's linear head).
    n : int
        Rows to pick.
    dropout_rate : float, default=0.75
        Fraction of entries zeroed, in (0, 1).
    n_dropout : int, default=5
        Dropout passes (>= 3).
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the masks (``numpy.random.RandomState``), k-means and tie breaking.

    Returns
    -------
    indices : ndarray of shape (n,)
        Picked rows, one per centroid.
    scores : ndarray of shape (n,)
        Their disagreement rate.
    """
    X = _check_X(X)
    n = _check_n(n, X.shape[0])
    rate = _validation.check_real("dropout_rate", dropout_rate, 0.0, 1.0, closed="neither")
    n_dropout = _validation.check_int("n_dropout", n_dropout, 3)
    seed = _kmeans_seed(random_state)
    disagree = dropout_disagreement(X, predict, dropout_rate=rate, n_dropout=n_dropout,
                                    random_state=seed)
    n_cand = max(int((disagree > 0.5).sum()), n)
    cand = np.sort(np.argsort(-disagree, kind="stable")[:n_cand])
    dist = KMeans(n_clusters=n, random_state=seed).fit_transform(X[cand])
    picked = []
    for b in range(n):
        d = dist[:, b].copy()
        d[np.isin(cand, picked)] = np.inf
        picked.append(int(cand[np.argmin(d)]))
    picked = np.asarray(picked, dtype=np.intp)
    return picked, disagree[picked]


# ------------------------------------------------------------ class-guided cold start
def classguided_select(X, proba, n, *, counts=None, k=20, random_state=None):
    """Class-guided typical picks: balanced over the classes the model (or its names) sees.

    A CB+SQ-style first batch (Kim et al., 2024): every pool row is assigned to the class
    the classifier predicts (for a zero-shot CLIP model: the class name whose text
    feature is nearest, so the clustering is guided by the class names); the picks go to
    the classes with the fewest labels so far (``counts``, plus picks), ties at random;
    the ``j`` picks of one class are the most typical rows of ``j`` k-means clusters of
    that class's rows (typicality as in :func:`typiclust_select`).

    Parameters
    ----------
    X : array-like of shape (n_pool, n_features)
        Pool features.
    proba : array-like of shape (n_pool, n_classes)
        Class probabilities of the pool (zero-shot or current model).
    n : int
        Rows to pick.
    counts : array-like of shape (n_classes,), optional
        Labels per class so far (default zeros).
    k : int, default=20
        Neighbours of the typicality.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds k-means and tie breaking.

    Returns
    -------
    indices : ndarray of shape (n,)
        Pool rows, in pick order.
    scores : ndarray of shape (n,)
        Typicality of each pick within its class.
    """
    X = _check_X(X)
    proba = _validation.check_proba(proba)
    if proba.shape[0] != X.shape[0]:
        raise ValueError(f"proba has {proba.shape[0]} rows for {X.shape[0]} feature rows")
    n = _check_n(n, X.shape[0])
    rng = _validation.as_generator(random_state)
    n_classes = proba.shape[1]
    counts = (np.zeros(n_classes, dtype=np.int64) if counts is None
              else np.asarray(counts, dtype=np.int64).copy())
    if counts.shape != (n_classes,):
        raise ValueError(f"counts must have shape ({n_classes},), got {counts.shape}")
    pseudo = proba.argmax(axis=1)
    size = np.bincount(pseudo, minlength=n_classes)
    quota = np.zeros(n_classes, dtype=np.int64)
    for _ in range(n):  # rarest class that still has rows left
        avail = np.flatnonzero(size - quota > 0)
        tot = counts[avail] + quota[avail]
        rarest = avail[tot == tot.min()]
        quota[rarest[rng.integers(rarest.size)]] += 1
    picked, scores = [], []
    seed = _kmeans_seed(random_state)
    for c in np.flatnonzero(quota):
        members = np.flatnonzero(pseudo == c)
        cl = KMeans(n_clusters=int(quota[c]), random_state=seed).fit_predict(X[members])
        typ_all = np.zeros(members.size)
        for j in np.unique(cl):
            typ_all[cl == j] = _typicality(X, members[cl == j], k)
        for j in range(int(quota[c])):
            in_j = cl == j
            if not in_j.any():  # an empty k-means cluster: the most typical row left
                in_j = ~np.isin(members, picked)
            t = _argmax(np.where(in_j, typ_all, -np.inf), rng)
            picked.append(members[t])
            scores.append(typ_all[t])
    return np.asarray(picked, dtype=np.intp), np.asarray(scores, dtype=np.float64)


# ------------------------------------------------------------------- query functions
def _unit(F):
    return F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)


def _pool_and_labeled(classifier, X_pool, kwargs, strategy):
    """``(proba, pool features, labelled features or None, y_labeled or None)``, unit rows."""
    n_pool = _pool.num_samples(X_pool)
    X_lab, y_lab = _pool.labeled_set(classifier, kwargs.get("X_labeled"),
                                    kwargs.get("y_labeled"), need="", strategy=strategy)
    proba, feats = _pool.proba_and_features(classifier, X_pool, n_pool)
    lab = None
    if X_lab is not None and _pool.num_samples(X_lab) > 0:
        lab = _pool.features(classifier, X_lab)
        if lab.shape[1] != feats.shape[1]:
            raise ValueError(f"X_labeled features have {lab.shape[1]} dimensions, "
                             f"the pool's {feats.shape[1]}")
        lab = _unit(lab)
    return proba, _unit(feats), lab, y_lab


def _stack(feats, lab):
    """Pool rows then labelled rows, and the labelled rows' indices in the stack."""
    if lab is None:
        return feats, np.zeros(0, dtype=np.intp)
    return np.vstack([feats, lab]), np.arange(feats.shape[0], feats.shape[0] + lab.shape[0])


def _query_doc(what, extra=""):
    return f"""{what}

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
        Seeds k-means, dropout masks and tie breaking.{extra}
    **kwargs : dict
        ``X_labeled`` / ``y_labeled`` (or a modAL learner's training data): the labelled
        set, optional. Other keywords are ignored.

    Returns
    -------
    indices : ndarray of shape (n_instances,)
        Unique pool indices, in pick order.
    scores : ndarray of shape (n_instances,)
        The selector's score of each pick.
    """


def _finish(fn, doc):
    fn.__doc__ = doc
    return fn


def typiclust_sampling(classifier, X_pool, n_instances=1, *, random_state=None, k=20, **kwargs):
    n = _validation.check_n_instances(n_instances, _pool.num_samples(X_pool))
    _, feats, lab, _ = _pool_and_labeled(classifier, X_pool, kwargs, "typiclust_sampling")
    X, lab_idx = _stack(feats, lab)
    return typiclust_select(X, lab_idx, n, k=k, random_state=_kmeans_seed(random_state))


def probcover_sampling(classifier, X_pool, n_instances=1, *, random_state=None, purity=0.95,
                       **kwargs):
    n = _validation.check_n_instances(n_instances, _pool.num_samples(X_pool))
    _, feats, lab, _ = _pool_and_labeled(classifier, X_pool, kwargs, "probcover_sampling")
    X, lab_idx = _stack(feats, lab)
    seed = _kmeans_seed(random_state)
    n_classes = max(2, _pool.classes(classifier).size)
    delta = probcover_radius(X, n_classes, purity=purity, random_state=seed)
    return probcover_select(X, lab_idx, n, delta=delta, random_state=seed)


def maxherding_sampling(classifier, X_pool, n_instances=1, *, random_state=None, gamma=None,
                        **kwargs):
    n = _validation.check_n_instances(n_instances, _pool.num_samples(X_pool))
    _, feats, lab, _ = _pool_and_labeled(classifier, X_pool, kwargs, "maxherding_sampling")
    return maxherding_select(feats, lab, n, gamma=gamma, random_state=_kmeans_seed(random_state))


def dropquery_sampling(classifier, X_pool, n_instances=1, *, random_state=None,
                       dropout_rate=0.75, n_dropout=5, **kwargs):
    n = _validation.check_n_instances(n_instances, _pool.num_samples(X_pool))

    def pick():  # depends on the model and the pool rows only: kept for a pick ahead
        proba, feats, _, _ = _pool_and_labeled(classifier, X_pool, kwargs, "dropquery_sampling")
        W, b = linear_head(feats, proba)
        return dropquery_select(feats, lambda F: (F @ W + b).argmax(axis=1), n,
                                dropout_rate=dropout_rate, n_dropout=n_dropout, random_state=seed)
    seed = _kmeans_seed(random_state)
    return _pool.memoized(classifier, X_pool, ("dropquery", n, dropout_rate, n_dropout), seed,
                          pick)


def classguided_sampling(classifier, X_pool, n_instances=1, *, random_state=None, k=20,
                         **kwargs):
    n = _validation.check_n_instances(n_instances, _pool.num_samples(X_pool))
    proba, feats, _, y_lab = _pool_and_labeled(classifier, X_pool, kwargs,
                                               "classguided_sampling")
    classes = _pool.classes(classifier)
    counts = np.zeros(classes.size, dtype=np.int64)
    if y_lab is not None and y_lab.size:
        counts += np.bincount(_pool.class_index(classes, y_lab), minlength=classes.size)
    return classguided_select(feats, proba, n, counts=counts, k=k,
                              random_state=_kmeans_seed(random_state))


def auto_sampling(classifier, X_pool, n_instances=1, *, random_state=None,
                  k_per_class=AUTO_K_PER_CLASS, gamma=0.1, **kwargs):
    n_pool = _pool.num_samples(X_pool)
    _validation.check_n_instances(n_instances, n_pool)
    k_per_class = _validation.check_int("k_per_class", k_per_class, 0)
    _, y_lab = _pool.labeled_set(classifier, kwargs.get("X_labeled"), kwargs.get("y_labeled"),
                                need="", strategy="auto_sampling")
    n_lab = 0 if y_lab is None else int(np.size(y_lab))
    if n_lab < k_per_class * _pool.classes(classifier).size:
        return dropquery_sampling(classifier, X_pool, n_instances,
                                  random_state=random_state, **kwargs)
    return class_balanced(margin_sampling, gamma)(
        classifier, X_pool, n_instances, random_state=_kmeans_seed(random_state), **kwargs)


_finish(typiclust_sampling, _query_doc(
    "TypiClust on the classifier's image features (see :func:`typiclust_select`).",
    "\n    k : int, default=20\n        Neighbours of the typicality."))
_finish(probcover_sampling, _query_doc(
    "ProbCover with the radius chosen from the data (see :func:`probcover_radius`).",
    "\n    purity : float, default=0.95\n        Purity threshold of the radius."))
_finish(maxherding_sampling, _query_doc(
    "MaxHerding on the classifier's image features (see :func:`maxherding_select`).",
    "\n    gamma : float, optional\n        RBF width (default: median heuristic)."))
_finish(dropquery_sampling, _query_doc(
    "DropQuery: dropout disagreement of the classifier's linear head, then k-means.\n\n"
    "    The head is recovered from the pool's probabilities and features\n"
    "    (:func:`linear_head`): exact for a prompt-tuned CLIP model or a logistic\n"
    "    regression, a linear approximation of any other model.",
    "\n    dropout_rate, n_dropout : float, int\n        See :func:`dropquery_select`."))
_finish(classguided_sampling, _query_doc(
    "Class-guided cold start (CB+SQ-style, see :func:`classguided_select`).\n\n"
    "    With a zero-shot model the classes come from the class names' text features, so\n"
    "    it picks a class-balanced, typical first batch before any label exists.",
    "\n    k : int, default=20\n        Neighbours of the typicality."))
_finish(auto_sampling, _query_doc(
    "``strategy=\"auto\"``: DropQuery, then margin sampling with PCB.\n\n"
    "    While the labelled set holds fewer than ``k_per_class`` labels per class the\n"
    "    batch comes from :func:`dropquery_sampling`; afterwards from\n"
    "    ``class_balanced(margin_sampling, gamma)``.",
    "\n    k_per_class : int, default=10\n        Labels per class before switching."
    "\n    gamma : float, default=0.1\n        PCB candidate fraction of the margin phase."))


def _impl(query):
    """The registry's ``impl`` of a query function of this module (no probabilities kept)."""
    def impl(classifier, X_pool, n, rng, **kwargs):
        idx, scores = query(classifier, X_pool, n, random_state=rng, **kwargs)
        return idx, scores, None

    return impl


# None needs a labelled set (they pick the very first batch); none is wrapped in PCB (they
# cover or balance by themselves); on Ray they run on the gathered pool (exact).
for _name, _query, _needs in (
        ("typiclust", typiclust_sampling, ("features",)),
        ("probcover", probcover_sampling, ("features",)),
        ("maxherding", maxherding_sampling, ("features",)),
        ("dropquery", dropquery_sampling, ("proba", "features")),
        ("classguided", classguided_sampling, ("proba", "features")),
        ("auto", auto_sampling, ("proba", "features"))):
    register_strategy(_name, _impl(_query), needs=_needs, pcb=False, query=_query)
