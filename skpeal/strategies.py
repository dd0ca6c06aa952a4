"""Query strategies for pool-based active learning, usable with modAL.

Three layers, kept apart as in modAL:

* **score functions** on a probability array (``entropy_scores``, ``margin_scores``,
  ``least_confidence_scores``), higher = more informative;
* **query functions** with modAL's signature
  ``f(classifier, X_pool, n_instances=1, *, random_state=None, **kw) -> (indices, scores)``.
  The return value is always a 2-tuple: ``indices`` (``np.intp``, unique, in range,
  exactly ``n_instances`` of them) and ``scores`` (float64, the score of each picked row).
  modAL 0.4.2 unpacks two values inside a bare ``except``, so anything else is misread;
* **wrappers**: :func:`class_balanced` (PCB class balancing).

How a strategy finds what it needs
----------------------------------
``classifier`` may be a fitted estimator or a modAL learner; modAL 0.4.2.1 passes the
``ActiveLearner`` itself (``self.query_strategy(self, X_pool, ...)``). Probabilities come
from ``classifier.predict_proba``. Feature-based strategies look at the *estimator*
(``classifier.estimator`` for a learner, else ``classifier``) and take features from

1. ``estimator.predict_proba_embed(X) -> (proba, features)`` when it exists (one model pass,
   as :class:`skpeal.CLIPAdapterClassifier` provides), else
2. ``estimator.embed(X)`` together with ``classifier.predict_proba(X)``, else
3. the flattened input ``X.reshape(len(X), -1)`` as float (plain scikit-learn estimators).

The labelled set (needed by ``coreset_sampling``, ``featdist_sampling`` and for the class
counts of ``class_balanced``) is taken from the ``X_labeled`` / ``y_labeled`` keywords when
given (``learner.query(X_pool, n_instances=k, X_labeled=X, y_labeled=y)`` forwards them),
else from the learner's ``X_training`` / ``y_training`` attributes. Feature-based
strategies embed the labelled set too (a pass over the labelled set, not over the pool).

Randomness (tie breaking, random picks) comes only from
``np.random.default_rng(random_state)``; the global NumPy RNG is never used.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import entr

from . import _validation
from .compat import modal as _modal_compat

# modAL 0.4.2.1 passes force_all_finite= to scikit-learn's check_X_y, which scikit-learn
# >= 1.8 rejects: importing the strategies (what a modAL loop with skpeal does) patches
# that name inside modAL only. See skpeal.compat.modal; undo with its disable() or
# SKPEAL_MODAL_COMPAT=0.
_modal_compat.enable_from_env()

__all__ = [
    "check_proba",
    "entropy_scores",
    "margin_scores",
    "least_confidence_scores",
    "random_sampling",
    "entropy_sampling",
    "margin_sampling",
    "least_confidence_sampling",
    "badge_sampling",
    "coreset_sampling",
    "featdist_sampling",
    "class_balanced",
]

# --------------------------------------------------------------------------- validation
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


_check_n_instances = _validation.check_n_instances
_rng = _validation.as_generator


def _num_samples(X):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        raise TypeError(f"X_pool must be array-like, got {type(X).__name__}") from None


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


# --------------------------------------------------------------------------- helpers
def _top_k(scores, k, rng):
    """Indices of the ``k`` largest scores, ties broken by ``rng``."""
    order = np.lexsort((rng.random(scores.shape[0]), -scores))
    return order[:k].astype(np.intp)


def _estimator(classifier):
    """The estimator inside a modAL learner, or ``classifier`` itself."""
    est = getattr(classifier, "estimator", None)
    return est if est is not None and hasattr(classifier, "query_strategy") else classifier


def _classes(classifier):
    for obj in (classifier, _estimator(classifier)):
        classes = getattr(obj, "classes_", None)
        if classes is not None:
            return np.asarray(classes)
    raise ValueError(
        f"{type(classifier).__name__} has no classes_: fit the classifier before querying"
    )


def _flat_features(X):
    try:
        import torch

        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            "feature-based strategies need features: the classifier has neither "
            "predict_proba_embed nor embed, and X is not numeric "
            f"(dtype {arr.dtype}); use an estimator with embed()"
        )
    return arr.reshape(arr.shape[0], -1).astype(np.float64)


def _predict_proba(classifier, X_pool, n_pool):
    proba = check_proba(classifier.predict_proba(X_pool), name="predict_proba output")
    if proba.shape[0] != n_pool:
        raise ValueError(
            f"predict_proba returned {proba.shape[0]} rows for a pool of {n_pool} samples"
        )
    return proba


def _proba_and_features(classifier, X_pool, n_pool):
    """One model pass over the pool giving ``(proba, features)``."""
    est = _estimator(classifier)
    if hasattr(est, "predict_proba_embed"):
        proba, feats = est.predict_proba_embed(X_pool)
        proba = check_proba(proba, name="predict_proba_embed probabilities")
    else:
        proba = _predict_proba(classifier, X_pool, n_pool)
        feats = est.embed(X_pool) if hasattr(est, "embed") else _flat_features(X_pool)
    feats = _check_features(np.asarray(feats, dtype=np.float64).reshape(n_pool, -1), "pool")
    if proba.shape[0] != n_pool:
        raise ValueError(f"the classifier returned {proba.shape[0]} rows for {n_pool} samples")
    return proba, feats


def _features(classifier, X):
    est = _estimator(classifier)
    if hasattr(est, "embed"):
        feats = est.embed(X)
    elif hasattr(est, "predict_proba_embed"):
        feats = est.predict_proba_embed(X)[1]
    else:
        feats = _flat_features(X)
    return _check_features(np.asarray(feats, dtype=np.float64).reshape(_num_samples(X), -1),
                           "labelled set")


def _check_features(feats, what):
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the {what} features contain NaN or infinity ({int(bad.sum())} row(s), first at "
            f"row {int(np.flatnonzero(bad)[0])}); distances to them are undefined"
        )
    return feats


def _labeled_set(classifier, X_labeled, y_labeled, *, need, strategy):
    """``(X, y)`` of the labelled set from keywords or a modAL learner's training data.

    ``need`` is ``""`` (nothing required), ``"X"`` or ``"Xy"``.
    """
    if X_labeled is None:
        X_labeled = getattr(classifier, "X_training", None)
    if y_labeled is None:
        y_labeled = getattr(classifier, "y_training", None)
    missing = ("X" in need and (X_labeled is None or _num_samples(X_labeled) == 0)) or (
        "y" in need and (y_labeled is None or np.size(y_labeled) == 0)
    )
    if missing:
        what = "X_labeled= and y_labeled=" if "y" in need else "X_labeled="
        raise ValueError(
            f"{strategy} needs the labelled set: pass {what} (or drive it with a modAL "
            "ActiveLearner that has X_training / y_training)"
        )
    if y_labeled is not None:
        y_labeled = np.asarray(y_labeled)
        if y_labeled.ndim != 1:
            y_labeled = y_labeled.reshape(-1)
        if X_labeled is not None and _num_samples(X_labeled) != y_labeled.shape[0]:
            raise ValueError(
                f"X_labeled has {_num_samples(X_labeled)} samples but y_labeled has "
                f"{y_labeled.shape[0]}"
            )
    return X_labeled, y_labeled


def _class_index(classes, y):
    """Map labels ``y`` to column indices of ``classes``; unknown labels raise."""
    return _validation.label_columns(y, classes, name="y_labeled",
                                     classes_name="classifier.classes_")


def _sq_dists(A, B):
    """Squared Euclidean distances between rows of ``A`` and ``B`` (clipped at 0)."""
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.maximum(d, 0.0)


def _min_sq_dist(A, B, chunk=1024):
    out = np.full(A.shape[0], np.inf)
    for start in range(0, B.shape[0], chunk):
        out = np.minimum(out, _sq_dists(A, B[start : start + chunk]).min(axis=1))
    return out


def _run(impl, classifier, X_pool, n_instances, random_state, kwargs):
    """Validate, then ``impl(classifier, X_pool, n, rng, **kwargs)``.

    ``impl`` returns ``(indices, scores, proba)`` where ``proba`` is the pool's probability
    array when the strategy computed it (``None`` otherwise); :func:`class_balanced` uses it
    to pseudo-label candidates without a second model pass.
    """
    n_pool = _num_samples(X_pool)
    n = _check_n_instances(n_instances, n_pool)
    idx, scores, proba = impl(classifier, X_pool, n, _rng(random_state), **kwargs)
    return np.asarray(idx, dtype=np.intp), np.asarray(scores, dtype=np.float64), proba


def _uncertainty_impl(score_fn):
    def impl(classifier, X_pool, n, rng, **_):
        proba = _predict_proba(classifier, X_pool, _num_samples(X_pool))
        scores = score_fn(proba)
        idx = _top_k(scores, n, rng)
        return idx, scores[idx], proba

    return impl


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
    return _run(_random_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _random_impl(classifier, X_pool, n, rng, **_):
    idx = rng.choice(_num_samples(X_pool), size=n, replace=False)
    return idx, np.zeros(n), None


def entropy_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    return _run(_entropy_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def margin_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    return _run(_margin_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def least_confidence_sampling(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
    return _run(_least_conf_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


_entropy_impl = _uncertainty_impl(entropy_scores)
_margin_impl = _uncertainty_impl(margin_scores)
_least_conf_impl = _uncertainty_impl(least_confidence_scores)
entropy_sampling.__doc__ = _UNCERTAINTY_DOC.format(
    what="predictive entropy", score="entropy_scores"
)
margin_sampling.__doc__ = _UNCERTAINTY_DOC.format(
    what="margin score ``1 - (p1 - p2)`` (the smallest margins)", score="margin_scores"
)
least_confidence_sampling.__doc__ = _UNCERTAINTY_DOC.format(
    what="least-confidence score ``1 - max p``", score="least_confidence_scores"
)


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
    return _run(_badge_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _badge_impl(classifier, X_pool, n, rng, **_):
    n_pool = _num_samples(X_pool)
    proba, feats = _proba_and_features(classifier, X_pool, n_pool)
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
    first = int(_top_k(sq, 1, rng)[0])
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
        idx = np.concatenate([idx, rest[_top_k(sq[rest], n - idx.size, rng)]])
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
    return _run(_coreset_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _coreset_impl(classifier, X_pool, n, rng, *, X_labeled=None, y_labeled=None, **_):
    X_lab, _ = _labeled_set(classifier, X_labeled, y_labeled, need="X", strategy="coreset_sampling")
    n_pool = _num_samples(X_pool)
    proba, feats = _proba_and_features(classifier, X_pool, n_pool)
    lab = _features(classifier, X_lab)
    if lab.shape[1] != feats.shape[1]:
        raise ValueError(
            f"X_labeled features have {lab.shape[1]} dimensions, the pool's {feats.shape[1]}"
        )
    min_d = _min_sq_dist(feats, lab)
    idx = np.empty(n, dtype=np.intp)
    scores = np.empty(n)
    for t in range(n):
        best = np.flatnonzero(min_d == min_d.max())
        i = best[rng.integers(best.size)] if best.size > 1 else best[0]
        idx[t], scores[t] = i, math.sqrt(max(min_d[i], 0.0))
        min_d = np.minimum(min_d, _sq_dists(feats, feats[i : i + 1])[:, 0])
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
    return _run(_featdist_impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]


def _featdist_impl(classifier, X_pool, n, rng, *, X_labeled=None, y_labeled=None, **_):
    X_lab, y_lab = _labeled_set(
        classifier, X_labeled, y_labeled, need="Xy", strategy="featdist_sampling"
    )
    classes = _classes(classifier)
    y_idx = _class_index(classes, y_lab)
    n_pool = _num_samples(X_pool)
    proba, feats = _proba_and_features(classifier, X_pool, n_pool)
    if proba.shape[1] != classes.size:
        raise ValueError(f"predict_proba has {proba.shape[1]} columns for {classes.size} classes")
    lab = _features(classifier, X_lab)
    present = np.unique(y_idx)
    means = np.stack([lab[y_idx == c].mean(axis=0) for c in present])
    dist = np.sqrt(_sq_dists(feats, means))  # (n_pool, n_present)
    own = np.full(classes.size, -1, dtype=np.intp)
    own[present] = np.arange(present.size)
    col = own[proba.argmax(axis=1)]
    # Own predicted class when it has labelled samples, else the nearest labelled class mean.
    scores = np.where(col >= 0, dist[np.arange(n_pool), np.maximum(col, 0)], dist.min(axis=1))
    idx = _top_k(scores, n, rng)
    return idx, scores[idx], proba


# Strategies whose implementation class_balanced can call directly to reuse the model pass.
_IMPLS = {
    random_sampling: _random_impl,
    entropy_sampling: _entropy_impl,
    margin_sampling: _margin_impl,
    least_confidence_sampling: _least_conf_impl,
    badge_sampling: _badge_impl,
    coreset_sampling: _coreset_impl,
    featdist_sampling: _featdist_impl,
}


# --------------------------------------------------------------------------- PCB wrapper
def class_balanced(strategy, gamma=0.1, *, random_state=None):
    """Wrap a query function with PCB class balancing (Bang et al., CVPR 2024).

    The returned query function (same signature, same 2-tuple return)

    1. takes the candidate set: the top ``max(n_instances, ceil(gamma * n_pool))`` rows
       chosen by ``strategy``;
    2. pseudo-labels candidates by ``argmax`` of the classifier's probabilities;
    3. picks ``n_instances`` rows one at a time: the class with the fewest labels so far
       (labelled count + rows already picked) *among classes that still have candidates*,
       ties broken at random, then a random candidate predicted as that class.

    A class without candidates is skipped for the next rarest; picks are never filled at
    random while candidates remain (the candidate set always holds ``n_instances`` rows).

    Parameters
    ----------
    strategy : callable
        A query function ``f(classifier, X_pool, n_instances, **kw) -> (indices, scores)``,
        e.g. :func:`entropy_sampling` or one of modAL's. With skpeal's strategies the
        pseudo-labels reuse the strategy's own model pass; with other strategies
        ``predict_proba`` is called again on the candidates only.
    gamma : float, default=0.1
        Fraction of the pool in the candidate set, in ``(0, 1]``.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds a generator created once here and used by every call that does not pass its
        own ``random_state`` (so a whole modAL loop is reproducible from this seed).

    Returns
    -------
    query : callable
        ``query(classifier, X_pool, n_instances=1, *, random_state=None, X_labeled=None,
        y_labeled=None, **kw) -> (indices, scores)``. Labelled class counts come from
        ``y_labeled`` or the learner's ``y_training`` (all zero when neither exists);
        classes from ``classifier.classes_`` (or ``classifier.estimator.classes_``).
        ``scores`` are the wrapped strategy's scores of the picked rows. Other keywords
        are forwarded to ``strategy``.

    Raises
    ------
    ValueError
        If ``gamma`` is not in ``(0, 1]`` or ``strategy`` is not callable.
    """
    if not callable(strategy):
        raise ValueError(f"strategy must be a callable query function, got {strategy!r}")
    gamma = _validation.check_real("gamma", gamma, 0.0, 1.0, closed="right")
    default_rng = _rng(random_state)

    def query(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
        n_pool = _num_samples(X_pool)
        n = _check_n_instances(n_instances, n_pool)
        rng = default_rng if random_state is None else _rng(random_state)
        n_cand = min(n_pool, max(n, math.ceil(gamma * n_pool - 1e-9)))
        impl = _IMPLS.get(strategy)
        if impl is not None:
            cand, cand_scores, proba = _run(impl, classifier, X_pool, n_cand, rng, kwargs)
        else:
            foreign_kw = {k: v for k, v in kwargs.items() if k not in ("X_labeled", "y_labeled")}
            cand, cand_scores = strategy(classifier, X_pool, n_cand, **foreign_kw)
            proba = None
        cand = np.asarray(cand).reshape(-1)
        if cand.size and (cand.dtype.kind not in "iu" or cand.min() < 0 or cand.max() >= n_pool):
            raise ValueError(
                f"strategy {getattr(strategy, '__name__', strategy)!r} returned indices outside "
                f"the pool [0, {n_pool}): {cand[(cand < 0) | (cand >= n_pool)][:5].tolist()}"
                if cand.dtype.kind in "iu" else
                f"strategy {getattr(strategy, '__name__', strategy)!r} returned indices of "
                f"dtype {cand.dtype}, not integers"
            )
        cand = cand.astype(np.intp)
        cand_scores = np.asarray(cand_scores, dtype=np.float64).reshape(-1)
        if cand.size < n_cand or np.unique(cand).size != cand.size:
            raise ValueError(
                f"strategy {getattr(strategy, '__name__', strategy)!r} returned "
                f"{cand.size} candidate(s) (unique: {np.unique(cand).size}) when asked for "
                f"{n_cand} (n_instances={n}, gamma={gamma})"
            )
        classes = _classes(classifier)
        if proba is not None:
            cand_proba = proba[cand]
        else:
            cand_proba = _predict_proba(classifier, _take_rows(X_pool, cand), cand.size)
        if cand_proba.shape[1] != classes.size:
            raise ValueError(
                f"predict_proba has {cand_proba.shape[1]} columns for {classes.size} classes"
            )
        pseudo = cand_proba.argmax(axis=1)
        _, y_lab = _labeled_set(
            classifier,
            kwargs.get("X_labeled"),
            kwargs.get("y_labeled"),
            need="",
            strategy="class_balanced",
        )
        counts = np.zeros(classes.size, dtype=np.int64)
        if y_lab is not None and y_lab.size:
            counts += np.bincount(_class_index(classes, y_lab), minlength=classes.size)
        picks = _balanced_picks(pseudo, counts, n, rng)
        return cand[picks], cand_scores[picks]

    # What skpeal.distributed needs to reproduce this query exactly on a cluster.
    query._skpeal_pcb = (strategy, gamma, default_rng)
    query.__name__ = query.__qualname__ = (
        f"class_balanced({getattr(strategy, '__name__', 'strategy')}, gamma={gamma})"
    )
    query.__doc__ = class_balanced.__doc__
    return query


def _take_rows(X, idx):
    if isinstance(X, (list, tuple)):
        return [X[i] for i in idx]
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    return X[idx]


def _balanced_picks(pseudo, counts, n, rng):
    """Positions (into the candidate list) picked by PCB balancing."""
    counts = counts.copy()
    pools = {c: list(rng.permutation(np.flatnonzero(pseudo == c))) for c in np.unique(pseudo)}
    picks = []
    for _ in range(n):
        avail = np.array([c for c, p in pools.items() if p])
        rarest = avail[counts[avail] == counts[avail].min()]
        c = rarest[rng.integers(rarest.size)] if rarest.size > 1 else rarest[0]
        picks.append(pools[c].pop())
        counts[c] += 1
    return np.asarray(picks, dtype=np.intp)
