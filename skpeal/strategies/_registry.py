"""The strategy registry: one typed record per query strategy, read by every user.

``skpeal run --strategies``, the labelling loop and session, the runner's evaluation, the
Ray actors and the Ray scorer all look a strategy up here; nothing else lists strategies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from .. import _pool, _validation
from .._validation import InvalidParameterError

__all__ = ["NEEDS", "Strategy", "get_strategy", "register_strategy", "strategy_names",
           "unregister_strategy"]

#: What a strategy may need: ``"proba"`` (the model's probabilities of the pool),
#: ``"features"`` (its features of the pool), ``"gradients"`` (gradient embeddings, built
#: from both) and ``"labels"`` (the labelled set: such a strategy has nothing to compare
#: with before the first labels, so ``skpeal run`` draws its round 0 at random).
NEEDS = ("proba", "features", "gradients", "labels")


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One query strategy, as registered with :func:`register_strategy`.

    Attributes
    ----------
    name : str
        The name ``skpeal run --strategies`` takes (its ``calibrated-`` form is implied).
    query : callable
        The modAL-compatible query function ``query(classifier, X_pool, n_instances=1, *,
        random_state=None, **kwargs) -> (indices, scores)``.
    impl : callable
        ``impl(classifier, X_pool, n, rng, **kwargs) -> (indices, scores, proba)``, called
        by ``query`` after validation with a NumPy Generator; ``proba`` is the pool's
        probability array when the strategy computed it (else None), so that
        :func:`~skpeal.strategies.class_balanced` pseudo-labels without a second pass.
    score : callable or None
        ``score(proba) -> (n_samples,)``, higher = more informative, when the strategy
        ranks rows by a function of their probabilities alone (the runner's
        error-detection AUROC uses it; None: entropy).
    needs : frozenset of str
        A subset of :data:`NEEDS`.
    topk : bool
        Whether the picks are the top ``n`` of a per-row score that depends on nothing
        but the row (and the labelled set), ties broken by
        :func:`skpeal._pool.top_k`: on Ray each block then returns its own top ``n`` and
        the driver merges them (exact).
    shardable : bool
        Whether the strategy can run *shard then merge* on Ray above the scorer's
        ``exact_max_rows`` (each block picks candidates, the driver picks among them).
    """

    name: str
    query: Callable
    impl: Callable
    score: Callable | None = None
    needs: frozenset = frozenset({"proba"})
    topk: bool = False
    shardable: bool = False

    @property
    def uses_model(self) -> bool:
        """Whether the strategy looks at the model at all (random sampling does not)."""
        return bool(self.needs & {"proba", "features", "gradients"})

    @property
    def uses_features(self) -> bool:
        """Whether the strategy needs the pool's features (not only probabilities)."""
        return bool(self.needs & {"features", "gradients"})

    @property
    def needs_labels(self) -> bool:
        """Whether the strategy needs a labelled set to compare with."""
        return "labels" in self.needs


_REGISTRY: dict[str, Strategy] = {}
_BY_QUERY: dict[int, Strategy] = {}


def run_impl(impl, classifier, X_pool, n_instances, random_state, kwargs):
    """Validate, then ``impl(classifier, X_pool, n, rng, **kwargs)``.

    Returns ``(indices, scores, proba)`` as intp, float64 and the pool's probabilities
    (or None).
    """
    n_pool = _pool.num_samples(X_pool)
    n = _validation.check_n_instances(n_instances, n_pool)
    idx, scores, proba = impl(classifier, X_pool, n, _validation.as_generator(random_state),
                              **kwargs)
    return np.asarray(idx, dtype=np.intp), np.asarray(scores, dtype=np.float64), proba


def score_impl(score):
    """The implementation of a strategy that picks the top rows of ``score(proba)``."""
    def impl(classifier, X_pool, n, rng, **_):
        proba = _pool.predict_proba(classifier, X_pool, _pool.num_samples(X_pool))
        scores = score(proba)
        idx = _pool.top_k(scores, n, rng)
        return idx, scores[idx], proba

    return impl


def _make_query(name, impl):
    def query(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
        return run_impl(impl, classifier, X_pool, n_instances, random_state, kwargs)[:2]

    query.__name__ = query.__qualname__ = f"{name.replace('-', '_')}_sampling"
    query.__doc__ = (f"The {name!r} query strategy (registered with register_strategy): "
                     "``(classifier, X_pool, n_instances=1, *, random_state=None, **kw) "
                     "-> (indices, scores)``.")
    return query


def register_strategy(name, impl=None, *, score=None, needs=None, topk=None,
                      shardable=False, query=None, replace=False):
    """Register a query strategy: one call makes it known everywhere.

    After the call, ``skpeal run --strategies <name>`` (and ``calibrated-<name>``),
    :class:`~skpeal.labeling.ActiveLearningLoop`, a labelling session,
    :func:`~skpeal.strategies.class_balanced` (reusing the strategy's model pass) and
    :class:`~skpeal.distributed.RayPoolScorer` all run it.

    Parameters
    ----------
    name : str
        The name on the command line, e.g. ``"entropy"``; not ``"linear-probe"`` and not
        starting with ``"calibrated-"``.
    impl : callable, optional
        ``impl(classifier, X_pool, n, rng, **kwargs) -> (indices, scores, proba)``: picks
        ``n`` (already validated) rows with the NumPy Generator ``rng``; ``kwargs`` may
        hold ``X_labeled`` / ``y_labeled``. The helpers of :mod:`skpeal._pool` give
        probabilities and features in one model pass. Optional when ``score`` is given:
        the strategy then picks the top ``n`` rows of ``score(proba)``.
    score : callable, optional
        ``score(proba) -> scores`` of shape (n_samples,), higher = more informative.
    needs : iterable of str, optional
        What the strategy needs, a subset of :data:`NEEDS`. Default: ``{"proba"}``.
    topk : bool, optional
        See :attr:`Strategy.topk`. Default: True when only ``score`` is given, else
        False.
    shardable : bool, default=False
        See :attr:`Strategy.shardable`.
    query : callable, optional
        The public query function, when it is written out (skpeal's own strategies,
        for their docstrings); default: one built from ``impl``.
    replace : bool, default=False
        Allow replacing a strategy of the same name.

    Returns
    -------
    strategy : Strategy
        The record; ``strategy.query`` is the query function.

    Raises
    ------
    InvalidParameterError
        If the name is taken (without ``replace``) or malformed, ``needs`` names
        something unknown, or neither ``impl`` nor ``score`` is callable.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpeal.strategies import register_strategy, unregister_strategy
    >>> rec = register_strategy("least-top", score=lambda p: 1 - np.asarray(p).max(axis=1))
    >>> rec.topk, sorted(rec.needs), rec.query.__name__
    (True, ['proba'], 'least_top_sampling')
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1]
    >>> idx, scores = rec.query(LogisticRegression().fit(X, y), X, 2, random_state=0)
    >>> sorted(idx.tolist())
    [1, 2]
    >>> unregister_strategy("least-top")
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise InvalidParameterError(f"strategy name must be a non-empty string, got {name!r}")
    if name.startswith("calibrated-") or name == "linear-probe":
        raise InvalidParameterError(
            f"strategy name {name!r} is reserved ('calibrated-<name>' is implied for every "
            "strategy; 'linear-probe' is the runner's baseline)")
    if name in _REGISTRY and not replace:
        raise InvalidParameterError(
            f"strategy {name!r} is already registered; pass replace=True to replace it")
    if score is not None and not callable(score):
        raise InvalidParameterError(f"score must be callable, got {score!r}")
    if impl is None:
        if score is None:
            raise InvalidParameterError(
                f"strategy {name!r}: give impl= (a query implementation) or score=")
        impl = score_impl(score)
        topk = True if topk is None else topk
    elif not callable(impl):
        raise InvalidParameterError(f"impl must be callable, got {impl!r}")
    needs = frozenset({"proba"} if needs is None else
                      ([needs] if isinstance(needs, str) else needs))
    unknown = sorted(needs - set(NEEDS))
    if unknown:
        raise InvalidParameterError(
            f"strategy {name!r}: unknown need {unknown[0]!r}; choose from {list(NEEDS)}")
    if query is None:
        query = _make_query(name, impl)
    elif not callable(query):
        raise InvalidParameterError(f"query must be callable, got {query!r}")
    record = Strategy(name=name, query=query, impl=impl, score=score, needs=needs,
                      topk=bool(topk), shardable=bool(shardable))
    if name in _REGISTRY:
        _BY_QUERY.pop(id(_REGISTRY[name].query), None)
    _REGISTRY[name] = record
    _BY_QUERY[id(query)] = record
    return record


def unregister_strategy(name):
    """Remove a registered strategy (a test's, or one being replaced).

    Parameters
    ----------
    name : str
        A registered name.

    Raises
    ------
    InvalidParameterError
        If no strategy of that name is registered.
    """
    record = get_strategy(name)
    del _REGISTRY[record.name]
    _BY_QUERY.pop(id(record.query), None)


def get_strategy(key, default=...):
    """The record of a strategy, by name or by its query function.

    Parameters
    ----------
    key : str or callable
        A registered name (``"entropy"``) or query function (``entropy_sampling``).
    default : object, optional
        Returned for an unknown key instead of raising (for a query function that is
        not registered, e.g. one of modAL's).

    Returns
    -------
    strategy : Strategy
        The record.

    Raises
    ------
    InvalidParameterError
        If ``key`` is not registered and no ``default`` is given.
    """
    record = _REGISTRY.get(key) if isinstance(key, str) else _BY_QUERY.get(id(key))
    if record is not None and (isinstance(key, str) or record.query is key):
        return record
    if default is not ...:
        return default
    raise InvalidParameterError(
        f"unknown strategy {getattr(key, '__name__', key)!r}; registered: {strategy_names()}")


def strategy_names():
    """Names of the registered strategies, in registration order.

    Returns
    -------
    names : list of str
        E.g. ``["random", "entropy", ...]``.
    """
    return list(_REGISTRY)


class QueryTable(Mapping):
    """A live read-only view ``{name: query function}`` of the registry."""

    def __getitem__(self, name):
        return _REGISTRY[name].query

    def __iter__(self):
        return iter(list(_REGISTRY))

    def __len__(self):
        return len(_REGISTRY)

    def __repr__(self):
        return f"QueryTable({list(_REGISTRY)})"
