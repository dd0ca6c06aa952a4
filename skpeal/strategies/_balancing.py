"""PCB class balancing (Bang et al., CVPR 2024) around any query function."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from .. import _pool, _validation
from ._registry import get_strategy, run_impl

__all__ = ["ClassBalanced", "class_balanced"]


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
    query : ClassBalanced
        A callable with typed fields (``strategy``, ``gamma``, ``rng``):
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
    return ClassBalanced(strategy, gamma, _validation.as_generator(random_state))


@dataclasses.dataclass(frozen=True, eq=False)
class ClassBalanced:
    """A query function wrapped with PCB class balancing; made by :func:`class_balanced`.

    Calling it queries as described in :func:`class_balanced`.

    Parameters
    ----------
    strategy : callable
        The wrapped query function.
    gamma : float
        Fraction of the pool in the candidate set, in ``(0, 1]``.
    rng : numpy.random.Generator
        The generator used by every call that passes no ``random_state`` of its own.
    """

    strategy: Callable
    gamma: float
    rng: np.random.Generator

    @property
    def __name__(self):
        name = getattr(self.strategy, "__name__", "strategy")
        return f"class_balanced({name}, gamma={self.gamma})"

    def n_candidates(self, n, n_pool):
        """Size of the candidate set for ``n`` picks from ``n_pool`` rows.

        Parameters
        ----------
        n : int
            Rows to pick.
        n_pool : int
            Rows in the pool.

        Returns
        -------
        n_candidates : int
            ``min(n_pool, max(n, ceil(gamma * n_pool)))``.
        """
        return min(n_pool, max(n, math.ceil(self.gamma * n_pool - 1e-9)))

    def __call__(self, classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
        strategy = self.strategy
        name = getattr(strategy, "__name__", strategy)
        n_pool = _pool.num_samples(X_pool)
        n = _validation.check_n_instances(n_instances, n_pool)
        rng = self.rng if random_state is None else _validation.as_generator(random_state)
        n_cand = self.n_candidates(n, n_pool)
        record = get_strategy(strategy, None)
        if record is not None:  # registered: its own model pass gives the pseudo-labels
            cand, cand_scores, proba = run_impl(record.impl, classifier, X_pool, n_cand, rng,
                                                kwargs)
        else:
            foreign_kw = {k: v for k, v in kwargs.items() if k not in ("X_labeled", "y_labeled")}
            cand, cand_scores = strategy(classifier, X_pool, n_cand, **foreign_kw)
            proba = None
        cand = np.asarray(cand).reshape(-1)
        if cand.size and (cand.dtype.kind not in "iu" or cand.min() < 0 or cand.max() >= n_pool):
            raise ValueError(
                f"strategy {name!r} returned indices outside the pool [0, {n_pool}): "
                f"{cand[(cand < 0) | (cand >= n_pool)][:5].tolist()}"
                if cand.dtype.kind in "iu" else
                f"strategy {name!r} returned indices of dtype {cand.dtype}, not integers"
            )
        cand = cand.astype(np.intp)
        cand_scores = np.asarray(cand_scores, dtype=np.float64).reshape(-1)
        if cand.size < n or np.unique(cand).size != cand.size:
            raise ValueError(
                f"strategy {name!r} returned {cand.size} candidate(s) "
                f"(unique: {np.unique(cand).size}); {n} needed"
            )
        _pool.classes(classifier)  # no classes_: say so before scoring candidates again
        if proba is not None:
            cand_proba = proba[cand]
        else:
            cand_proba = _pool.predict_proba(classifier, _pool.take_rows(X_pool, cand),
                                             cand.size)
        picks = self.picks(classifier, cand_proba.argmax(axis=1), cand_proba.shape[1], n, rng,
                           kwargs.get("X_labeled"), kwargs.get("y_labeled"))
        return cand[picks], cand_scores[picks]

    def picks(self, classifier, pseudo, n_cols, n, rng, X_labeled=None, y_labeled=None):
        """Positions among the candidates that the balancing picks.

        Parameters
        ----------
        classifier : estimator or modAL learner
            Gives ``classes_`` (and a learner's ``y_training``).
        pseudo : ndarray of shape (n_candidates,)
            Pseudo-label (column of ``classes_``) of each candidate.
        n_cols : int
            Columns of the probabilities the pseudo-labels come from.
        n : int
            Rows to pick.
        rng : numpy.random.Generator
            Draws the picks.
        X_labeled, y_labeled : array-like, optional
            The labelled set (its class counts).

        Returns
        -------
        picks : ndarray of shape (n,)
            Positions into the candidate list.
        """
        classes = _pool.classes(classifier)
        if n_cols != classes.size:
            raise ValueError(f"predict_proba has {n_cols} columns for {classes.size} classes")
        _, y_lab = _pool.labeled_set(classifier, X_labeled, y_labeled, need="",
                                     strategy="class_balanced")
        counts = np.zeros(classes.size, dtype=np.int64)
        if y_lab is not None and y_lab.size:
            counts += np.bincount(_pool.class_index(classes, y_lab), minlength=classes.size)
        return _balanced_picks(pseudo, counts, n, rng)


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
