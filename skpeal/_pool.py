"""Pool helpers shared by the query strategies and by distributed scoring (bottom floor).

What a strategy needs from a classifier and a pool, in one place: the number of rows,
rows by index, the estimator inside a modAL learner, its classes, probabilities and
features from one model pass, the labelled set, distances and the seeded top-k; and
:class:`PoolScores`, a stand-in classifier over precomputed rows on which every skpeal
strategy runs unchanged (a labelling round, a Ray actor's block, the driver's merge).

Private to skpeal: :mod:`skpeal.strategies`, :mod:`skpeal.labeling` and
:mod:`skpeal.distributed` import it; nothing here imports them.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _validation

__all__ = ["PoolScores"]


def memoized(classifier, X_pool, key, seed, compute):
    """``compute()``, kept on ``classifier`` when it is :class:`PoolScores` queried on row
    indices with an integer ``seed`` (see :meth:`PoolScores.memo`); else computed."""
    rows = X_pool if isinstance(X_pool, np.ndarray) else None
    if not isinstance(classifier, PoolScores) or rows is None or rows.dtype.kind not in "iu" \
            or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        return compute()
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return classifier.memo((*key, int(seed), rows.size, rows.tobytes()), compute)


def num_samples(X) -> int:
    """Rows of an array, tensor, data frame or sequence."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        raise TypeError(f"X_pool must be array-like, got {type(X).__name__}") from None


def take_rows(X, idx):
    """Rows ``idx`` of a list, tuple, data frame, array or tensor."""
    if isinstance(X, (list, tuple)):
        return [X[i] for i in idx]
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    return X[idx]


def top_k(scores, k, rng):
    """Indices of the ``k`` largest scores, ties broken by ``rng`` (one draw per row)."""
    order = np.lexsort((rng.random(scores.shape[0]), -scores))
    return order[:k].astype(np.intp)


def estimator(classifier):
    """The estimator inside a modAL learner, or ``classifier`` itself."""
    est = getattr(classifier, "estimator", None)
    return est if est is not None and hasattr(classifier, "query_strategy") else classifier


def classes(classifier):
    """``classes_`` of ``classifier`` (or of the estimator inside a modAL learner)."""
    for obj in (classifier, estimator(classifier)):
        found = getattr(obj, "classes_", None)
        if found is not None:
            return np.asarray(found)
    raise ValueError(
        f"{type(classifier).__name__} has no classes_: fit the classifier before querying"
    )


def flat_features(X):
    """``X`` flattened to float rows: the features of a model that has none."""
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


def predict_proba(classifier, X_pool, n_pool):
    """``classifier.predict_proba(X_pool)`` checked: float64 rows, one per pool row."""
    proba = _validation.check_proba(classifier.predict_proba(X_pool),
                                    name="predict_proba output")
    if proba.shape[0] != n_pool:
        raise ValueError(
            f"predict_proba returned {proba.shape[0]} rows for a pool of {n_pool} samples"
        )
    return proba


def proba_and_features(classifier, X_pool, n_pool):
    """One model pass over the pool giving ``(proba, features)``."""
    est = estimator(classifier)
    if hasattr(est, "predict_proba_embed"):
        proba, feats = est.predict_proba_embed(X_pool)
        proba = _validation.check_proba(proba, name="predict_proba_embed probabilities")
    else:
        proba = predict_proba(classifier, X_pool, n_pool)
        feats = est.embed(X_pool) if hasattr(est, "embed") else flat_features(X_pool)
    feats = check_features(np.asarray(feats, dtype=np.float64).reshape(n_pool, -1), "pool")
    if proba.shape[0] != n_pool:
        raise ValueError(f"the classifier returned {proba.shape[0]} rows for {n_pool} samples")
    return proba, feats


def features(classifier, X):
    """Features of ``X`` (the labelled set): ``embed``, else one model pass, else ``X``."""
    est = estimator(classifier)
    if hasattr(est, "embed"):
        feats = est.embed(X)
    elif hasattr(est, "predict_proba_embed"):
        feats = est.predict_proba_embed(X)[1]
    else:
        feats = flat_features(X)
    return check_features(np.asarray(feats, dtype=np.float64).reshape(num_samples(X), -1),
                          "labelled set")


def check_features(feats, what):
    """Refuse feature rows with NaN or infinity (distances to them are undefined)."""
    bad = ~np.isfinite(feats).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the {what} features contain NaN or infinity ({int(bad.sum())} row(s), first at "
            f"row {int(np.flatnonzero(bad)[0])}); distances to them are undefined"
        )
    return feats


def labeled_set(classifier, X_labeled, y_labeled, *, need, strategy):
    """``(X, y)`` of the labelled set from keywords or a modAL learner's training data.

    ``need`` is ``""`` (nothing required), ``"X"`` or ``"Xy"``.
    """
    if X_labeled is None:
        X_labeled = getattr(classifier, "X_training", None)
    if y_labeled is None:
        y_labeled = getattr(classifier, "y_training", None)
    missing = ("X" in need and (X_labeled is None or num_samples(X_labeled) == 0)) or (
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
        if X_labeled is not None and num_samples(X_labeled) != y_labeled.shape[0]:
            raise ValueError(
                f"X_labeled has {num_samples(X_labeled)} samples but y_labeled has "
                f"{y_labeled.shape[0]}"
            )
    return X_labeled, y_labeled


def class_index(classes_, y):
    """Map labels ``y`` to column indices of ``classes_``; unknown labels raise."""
    return _validation.label_columns(y, classes_, name="y_labeled",
                                     classes_name="classifier.classes_")


def sq_dists(A, B):
    """Squared Euclidean distances between rows of ``A`` and ``B`` (clipped at 0)."""
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    return np.maximum(d, 0.0)


def min_sq_dist(A, B, chunk=1024):
    """Squared distance of each row of ``A`` to its nearest row of ``B``."""
    out = np.full(A.shape[0], np.inf)
    for start in range(0, B.shape[0], chunk):
        out = np.minimum(out, sq_dists(A, B[start : start + chunk]).min(axis=1))
    return out


class PoolScores:
    """Precomputed scores of a pool, as a fitted classifier on row indices.

    Every skpeal query function (and :func:`~skpeal.strategies.class_balanced`) runs on
    it with ``X_pool`` = pool row indices: a labelling round queries, suggests and
    estimates from one model pass, and a Ray actor or driver runs the in-process
    strategy on arrays gathered from the cluster (same arithmetic, same random draws).
    Built from computed arrays, or lazily from a model: computed on the first use (never
    for a strategy that does not look at the model, such as
    :func:`~skpeal.strategies.random_sampling`), with the image features only when a
    strategy asks for them (the uncertainty strategies keep no feature matrix of the
    pool).

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The model's ``classes_`` (the columns of ``proba``).
    proba : ndarray of shape (n_pool, n_classes), optional
        Probabilities of every pool row.
    features : ndarray of shape (n_pool, n_features) or None, optional
        Features of every pool row (None: the model has none; feature-based strategies
        then raise).
    compute : callable, optional
        ``compute(with_features) -> (proba, features)`` instead of the arrays: called on
        first use, and again only if features are asked for after the probabilities
        alone were computed (skpeal's feature strategies ask for both at once).
    labeled : ndarray of shape (n_labeled, n_features), callable or None, default=None
        Features of a labelled set kept apart from the pool (or a function returning
        them, called when first needed): :meth:`embed` then takes indices into these
        rows. None: the labelled rows are pool rows, and :meth:`embed` takes pool row
        indices.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        ``classes``.
    """

    def __init__(self, classes, proba=None, features=None, *, compute=None, labeled=None):
        if (proba is None) == (compute is None):
            raise ValueError("PoolScores: give proba (and features) or compute, not both")
        self.classes_ = np.asarray(classes)
        self._proba, self._features, self._compute = proba, features, compute
        self._labeled = labeled
        self._lock = threading.RLock()  # a pick ahead and a pick may run at once
        self._memo = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        state["_memo"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.RLock())

    def _arrays(self, with_features):
        with self._lock:
            if self._compute is not None and (
                    self._proba is None or (with_features and self._features is None)):
                self._proba, self._features = self._compute(with_features)
                if with_features:
                    self._compute = None  # everything is known now
            return self._proba, self._features

    def memo(self, key, compute, *, size=4):
        """``compute()`` once per ``key`` for these scores (the last ``size`` keys kept).

        A pick that depends on nothing but these scores and ``key`` (e.g. DropQuery's: the
        pool rows, ``n``, its parameters and an integer seed) is computed once: a pick
        computed ahead (the labelling page's next batch, while the person answers) is then
        the pick itself. A caller asking while another computes the same key waits for
        that result instead of computing it again.

        Parameters
        ----------
        key : hashable
            Everything the result depends on besides these scores.
        compute : callable
            ``compute() -> tuple of ndarray``.
        size : int, default=4
            Keys kept.

        Returns
        -------
        result : tuple of ndarray
            Copies of ``compute()``'s arrays.
        """
        with self._lock:
            entry = self._memo.get(key)
            owner = entry is None
            if owner:
                entry = self._memo[key] = [threading.Event(), None]
                while len(self._memo) > size:
                    del self._memo[next(iter(self._memo))]
        if owner:
            try:
                entry[1] = tuple(compute())
            except BaseException:
                with self._lock:
                    if self._memo.get(key) is entry:
                        del self._memo[key]
                raise
            finally:
                entry[0].set()
        else:
            entry[0].wait()
            if entry[1] is None:  # the computing caller failed: try (and fail) here too
                return self.memo(key, compute, size=size)
        return tuple(np.array(a, copy=True) for a in entry[1])

    @property
    def proba(self):
        """The probabilities of every pool row, shape (n_pool, n_classes)."""
        return self._arrays(False)[0]

    @property
    def features(self):
        """The features of every pool row, shape (n_pool, n_features), or None."""
        return self._arrays(True)[1]

    def predict_proba(self, X):
        """Probabilities of pool rows.

        Parameters
        ----------
        X : array-like of int
            Pool row indices.

        Returns
        -------
        proba : ndarray of shape (len(X), n_classes)
            Their rows of :attr:`proba`.
        """
        return self.proba[np.asarray(X, dtype=np.intp)]

    def embed(self, X):
        """Features of pool rows (or of labelled rows, with ``labeled``).

        Parameters
        ----------
        X : array-like of int
            Pool row indices (indices into ``labeled`` when it was given).

        Returns
        -------
        features : ndarray of shape (len(X), n_features)
            Their features.
        """
        if self._labeled is not None:
            if callable(self._labeled):
                self._labeled = self._labeled()
            return self._labeled[np.asarray(X, dtype=np.intp)]
        return self._pool_features(X)

    def _pool_features(self, X):
        feats = self.features
        if feats is None:
            raise ValueError("this model gives no image features: a feature-based strategy "
                             "(BADGE, coreset, featdist...) cannot run on it")
        return feats[np.asarray(X, dtype=np.intp)]

    def predict_proba_embed(self, X):
        """Probabilities and features of pool rows (what one model pass gives).

        Parameters
        ----------
        X : array-like of int
            Pool row indices.

        Returns
        -------
        proba : ndarray of shape (len(X), n_classes)
            As :meth:`predict_proba`.
        features : ndarray of shape (len(X), n_features)
            Their rows of :attr:`features`.
        """
        X = np.asarray(X, dtype=np.intp)
        proba, _ = self._arrays(True)
        return proba[X], self._pool_features(X)
