"""A modAL-compatible query strategy that scores the pool on Ray."""

from __future__ import annotations

from ._scorer import RayPoolScorer


def distributed_strategy(strategy, scorer=None, **scorer_params):
    """Wrap a query function so that it scores the pool on a Ray cluster.

    The result has modAL's signature and can be passed as ``query_strategy=`` to
    :class:`modAL.models.ActiveLearner`; it returns what ``strategy`` would return
    in-process (see :class:`RayPoolScorer` for what is exact).

    Parameters
    ----------
    strategy : callable
        A query function of :mod:`skpeal.strategies`, possibly wrapped by
        :func:`~skpeal.strategies.class_balanced`.
    scorer : RayPoolScorer or None, default=None
        Where and how to score; None builds one from ``scorer_params``.
    **scorer_params : dict
        Parameters of a new :class:`RayPoolScorer` (only without ``scorer``).

    Returns
    -------
    query : callable
        ``query(classifier, X_pool, n_instances=1, *, random_state=None, **kw)
        -> (indices, scores)``. Its ``scorer`` attribute is the scorer (``stats_`` of
        the last call).

    Examples
    --------
    >>> from modAL.models import ActiveLearner                    # doctest: +SKIP
    >>> from skpeal.strategies import class_balanced, entropy_sampling
    >>> query = distributed_strategy(class_balanced(entropy_sampling, 0.1, random_state=0),
    ...                              num_gpus_per_actor=1)      # doctest: +SKIP
    >>> learner = ActiveLearner(estimator=clf, query_strategy=query)  # doctest: +SKIP
    """
    if not callable(strategy):
        raise ValueError(f"strategy must be a callable query function, got {strategy!r}")
    if scorer is None:
        scorer = RayPoolScorer(**scorer_params)
    elif scorer_params:
        raise ValueError("pass either scorer= or RayPoolScorer parameters, not both")

    def query(classifier, X_pool, n_instances=1, *, random_state=None, **kwargs):
        return scorer.query(strategy, classifier, X_pool, n_instances,
                            random_state=random_state, **kwargs)

    name = getattr(strategy, "__name__", "strategy")
    query.__name__ = query.__qualname__ = f"distributed({name})"
    query.__doc__ = distributed_strategy.__doc__
    query.scorer = scorer
    return query
