"""A labelling session's pool encoded and scored on a Ray cluster (``ray=`` / ``--ray``).

:class:`RayScoring` is what :class:`~skpeal.labeling.LabelingSession` uses instead of
scoring in its own process when it is given a Ray address: the cluster's persistent
scoring actors (:class:`skpeal.distributed.RayPoolScorer`) encode the images and score
them, and the image features of a frozen image tower are kept in the project's
:class:`~skpeal.distributed.ParquetFeatureStore` (``<project>/ray-features``), so a later
round (a new adapter) or a restarted session reads them instead of encoding again. The
probabilities of every image come back to the session (its page shows a suggestion for
each), and the features too when the strategy uses them (e.g. ``auto``'s DropQuery);
queries then run in the session's process on those scores, exactly as in-process.

What stays in the session's process: fitting each round's adapter on the labelled
images, and round 0's first sample (:data:`~skpeal.labeling.session.FIRST_ENCODED`
images, so the first batch is shown before the cluster has encoded the pool).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import strategies
from .loop import PoolScores, image_side_cached

__all__ = ["RayScoring"]


class RayScoring:
    """Score a session's pool on Ray (see the module docstring).

    Parameters
    ----------
    address : str or None
        ``"local"`` (start Ray here), ``"auto"`` (the cluster this machine belongs to)
        or a cluster address (``host:port``, ``ray://host:port``); connected here, so a
        wrong address fails when the session is created. None: an inactive object
        (false in a boolean context) whose :meth:`close` does nothing.
    project : path-like
        The project folder; the feature store is ``<project>/ray-features`` (on a
        multi-node cluster it and the images must be at the same paths on every node).
    """

    def __init__(self, address, project):
        self._scorers, self._started, self.stats_ = {}, False, {}
        if address is None:
            return
        # the Ray side (skpeal[ray]): imported only when a session is given ray=
        from ..distributed import ParquetFeatureStore, RayPoolScorer, init_ray
        from ..distributed._connect import check_address

        if not isinstance(address, str):
            raise ValueError(f"ray must be an address string ('local', 'auto', host:port), "
                             f"got {address!r}")
        check_address(address)
        self.address = address
        self._started = init_ray(address)  # here, in the caller's (main) thread
        self.store = ParquetFeatureStore(Path(project) / "ray-features")
        self._scorers = {True: RayPoolScorer(feature_store=self.store), False: RayPoolScorer()}
        self.stats_ = {}  # the last call's RayPoolScorer.stats_ (n_encoded, nodes...)

    def __bool__(self):
        return bool(self._scorers)

    def scorer(self, est):
        """The scorer for ``est``: with the feature store when its image tower is frozen."""
        return self._scorers[image_side_cached(est)]

    @staticmethod
    def with_features(strategy) -> bool:
        """Whether the session's strategy needs the pool's features (unknown: yes)."""
        record = strategies.get_strategy(strategy or strategies.entropy_sampling, None)
        return record is None or record.uses_features

    def scores(self, est, paths, strategy, progress=None, *, local=False):
        """``(proba, features or None)`` of ``est`` over ``paths``, scored on the cluster.

        Parameters
        ----------
        est : CLIPAdapterClassifier
            Fitted.
        paths : list of str
            The images.
        strategy : callable or None
            The session's strategy (features are gathered only when it uses them).
        progress : callable, optional
            ``progress(done)`` after every block.
        local : bool, default=False
            Score in this process instead (round 0's first sample, shown before the
            cluster's actors have started) and put the features in the feature store, so
            that no later round encodes these images again.

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
        features : ndarray of shape (n_images, n_features) or None
        """
        if not paths:
            return np.empty((0, len(est.classes_))), None
        if local:
            return self._local(est, list(paths), strategy)
        scorer = self.scorer(est)
        out = scorer.score(est, list(paths), features=self.with_features(strategy),
                           progress=progress)
        self.stats_ = dict(scorer.stats_)
        return out

    def pool_scores(self, est, paths, strategy, state):
        """:meth:`scores` as :class:`~skpeal.labeling.loop.PoolScores`, progress in ``state``."""
        proba, feats = self.scores(est, paths, strategy,
                                   lambda done: state.update(done=done))
        return PoolScores(est.classes_, proba, feats)

    def _local(self, est, paths, strategy):
        from ..distributed import content_keys
        from ..distributed._internals import feature_space_id

        proba, feats = est.predict_proba_embed(paths)
        if image_side_cached(est):  # the actors read these instead of encoding them
            self.store.write(feature_space_id(est), content_keys(paths),
                             np.asarray(feats, dtype=np.float32))
        return proba, (feats if self.with_features(strategy) else None)

    def close(self):
        """Stop the scoring actors, and leave the Ray this object connected to."""
        for s in self._scorers.values():
            s.close()
        if self._started:
            from ..distributed import shutdown_ray  # the Ray side (skpeal[ray])

            shutdown_ray()
            self._started = False
