"""RayPoolScorer: score a pool on a Ray cluster and select on the driver."""

from __future__ import annotations

import math

import numpy as np

from .. import _pool
from .._validation import as_generator, check_int, check_n_instances
from ..strategies import ClassBalanced, get_strategy
from . import _internals
from ._actor import _precomputed
from ._connect import check_address, import_ray
from ._pool import close_pool, shared_pool
from .store import ParquetFeatureStore

_EXACT_RNG = ("PCG64", "PCG64DXSM")  # bit generators whose advance() counts 64-bit draws


def init_ray(address=None, **kwargs):
    """Connect to Ray (once per process): a local instance, or a running cluster.

    Parameters
    ----------
    address : str or None, default=None
        None or ``"local"``: start Ray on this machine (``ray.init()``); ``"auto"``: the
        cluster this machine belongs to (started with ``ray start``); else a cluster
        address such as ``"ray://head:10001"`` or ``"10.0.0.1:6379"``.
    **kwargs : dict
        Passed to :func:`ray.init` (e.g. ``num_cpus=2``).

    Returns
    -------
    started : bool
        False when Ray was already initialised in this process (nothing done).
    """
    ray = import_ray()  # optional dependency (skpeal[ray]): the install command if missing
    if ray.is_initialized():
        return False
    if address not in (None, "local"):
        check_address(address)  # nothing listening: fail in seconds, naming the address
    if address in (None, "local"):
        ray.init(**kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def shutdown_ray():
    """Disconnect this process from Ray (and stop a local Ray that :func:`init_ray` started).

    Returns
    -------
    was_connected : bool
        False when Ray was not initialised (nothing done).
    """
    import ray  # optional dependency (skpeal[ray])

    if not ray.is_initialized():
        return False
    ray.shutdown()
    return True


class RayPoolScorer:
    """Score an active-learning pool with Ray actors that live across queries.

    The scorer starts its actors on its first query and keeps them (one actor per free
    CPU, spread over the cluster's nodes): torch stays imported and the backbone stays
    built in each actor. Every query puts the fitted estimator's pickle in Ray's object
    store once (it holds the adapter weights and the backbone description, never the
    backbone) and each actor unpickles it on its first block of that query, then scores
    contiguous blocks of the pool, one block in flight per actor. Actors return only what
    the strategy needs; the pool's probabilities and features are never gathered in one
    process unless the strategy needs them all (see Notes). :meth:`close` stops the
    actors (they also end with the driver's Ray connection).

    Parameters
    ----------
    num_actors : int or None, default=None
        Actors in the pool; None: as many as the cluster's free CPUs (or GPUs, with
        ``num_gpus_per_actor``) allow, at most one per block.
    num_cpus_per_actor : float, default=1
        CPUs reserved per actor (torch in the actor uses as many threads).
    num_gpus_per_actor : float, default=0
        GPUs per actor; > 0 moves the estimator's model to the actor's GPU.
    block_size : int or None, default=None
        Pool rows per block, rounded up to a multiple of the estimator's inference batch
        size (so blocks run the very batches the in-process path runs). None: about four
        blocks per actor, between one batch and 8,192 rows.
    feature_store : ParquetFeatureStore, str, path-like or None, default=None
        Frozen image tower only: where the pool's image features are kept across calls
        (see :mod:`skpeal.distributed.store`); later calls score from stored features and
        encode only images not stored yet. None: every call encodes every image.
    exact_max_rows : int, default=200_000
        Coreset and BADGE: pools up to this size gather probabilities and features
        (``n_rows * (n_classes + n_features) * 8`` bytes) on the driver and run the
        in-process algorithm exactly; larger pools use shard-then-merge (see Notes).
    decode_workers : int or None, default=0
        Image-decoding worker processes per actor (the estimator's ``num_workers``);
        0 decodes in the actor's own process, which is what a 1-CPU actor should do.
    address : str or None, default=None
        Used when Ray is not initialised yet: see :func:`init_ray`.
    max_restarts, max_task_retries : int, default=-1
        Fault tolerance (-1: without limit): an actor whose process or node dies is
        restarted by Ray (``max_restarts`` times) where there is room, and its block is
        queued again for any live actor (at most ``max_task_retries`` times), which
        changes no result. When no actor is alive for 300 s with blocks left (every node
        holding them stopped, no room to restart them) the query raises RuntimeError; a
        result is never returned short.

    Attributes
    ----------
    stats_ : dict
        Of the last call: ``n_blocks``, ``n_actors``, ``block_size``, ``n_encoded``
        (images encoded, i.e. not read from the feature store), ``rows_returned`` (rows
        sent back to the driver), ``bytes_returned`` (the bytes of the arrays sent back),
        ``n_retried`` (blocks scored again after their actor or node died), ``nodes``
        (the Ray node ids whose actors scored a block) and ``setup_s`` (the longest time
        an actor spent taking up this query's estimator).

    Notes
    -----
    What is exact (the same indices as the in-process strategy for the same
    ``random_state``, ties included, given the same scores; an actor's torch may run on
    another number of threads than the driver's, which on some CPUs changes the scores'
    last bits, about 1e-7):

    * entropy, margin and least-confidence sampling, and featdist: each block returns
      its top ``k`` rows under the in-process order (score, then the row's tie-breaking
      draw, which each block computes by jumping to its offset in the same random
      stream), and the driver merges them: the global top ``k`` is the top ``k`` of the
      union. The driver's generator is advanced exactly as in-process.
    * PCB (:func:`skpeal.strategies.class_balanced`) around those: the same merge with
      ``k = ceil(gamma * n_pool)`` candidates, then the in-process balancing on the
      driver. Around random sampling, the candidates are drawn on the driver and only
      they are scored.
    * coreset and BADGE (and PCB around them, and foreign strategies) on pools of at most
      ``exact_max_rows`` rows: the probabilities and features are gathered and the
      in-process function runs on them.

    What is approximated, above ``exact_max_rows`` rows:

    * coreset (k-centre greedy) and BADGE (k-means++ seeding) run *shard then merge*: each
      block runs the in-process algorithm alone (coreset from the labelled set) and
      keeps ``n_instances`` candidates; the driver runs the same algorithm over the union
      of candidates. With one block this is the in-process selection (same set); with
      several, coreset's covering radius is within a constant factor of the optimum
      (greedy on the merged candidates of per-shard greedy: at most 6x optimal, against
      2x for in-process greedy) and BADGE draws its seeds from the candidates only. The
      driver holds ``n_blocks * n_instances`` rows of features. PCB around them is not
      offered at that size (it raises).

    Scores equal the in-process ones when the actors run on the same kind of device
    with the same batch size (blocks are cut at multiples of it). Scores computed from
    a feature store agree with ``predict_proba`` to float32 rounding.

    Examples
    --------
    >>> from skpeal.distributed import RayPoolScorer, init_ray  # doctest: +SKIP
    >>> init_ray("auto")                                       # doctest: +SKIP
    >>> scorer = RayPoolScorer(num_gpus_per_actor=1)           # doctest: +SKIP
    >>> idx, scores = scorer.query(entropy_sampling, clf, paths, 100,
    ...                            random_state=0)             # doctest: +SKIP
    """

    def __init__(self, *, num_actors=None, num_cpus_per_actor=1, num_gpus_per_actor=0,
                 block_size=None, feature_store=None, exact_max_rows=200_000,
                 decode_workers=0, address=None, max_restarts=-1, max_task_retries=-1):
        self.num_actors = num_actors
        self.num_cpus_per_actor = num_cpus_per_actor
        self.num_gpus_per_actor = num_gpus_per_actor
        self.block_size = block_size
        self.feature_store = feature_store
        self.exact_max_rows = exact_max_rows
        self.decode_workers = decode_workers
        self.address = address
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        self.stats_ = {}

    def __repr__(self):
        return (f"RayPoolScorer(num_actors={self.num_actors!r}, "
                f"num_gpus_per_actor={self.num_gpus_per_actor!r}, "
                f"feature_store={self.feature_store!r})")

    # ------------------------------------------------------------------ public API
    def predict_proba(self, classifier, X_pool):
        """Class probabilities of the whole pool, in pool order (gathered on the driver).

        Parameters
        ----------
        classifier : estimator or modAL learner
            Fitted and picklable, with ``predict_proba``.
        X_pool : sequence of image paths, or any images the estimator accepts
            The pool, sliced into blocks in order.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows in pool order, columns in ``classes_`` order.
        """
        est = _pool.estimator(classifier)
        n = _pool.num_samples(X_pool)
        out = np.empty((n, len(_pool.classes(classifier))))
        for b in self._run(est, X_pool, {"mode": "gather", "features": False}):
            out[b["idx"]] = b["proba"]
        return out

    def query(self, strategy, classifier, X_pool, n_instances=1, *, random_state=None,
              X_labeled=None, y_labeled=None, **kwargs):
        """Run a query strategy over the pool on the cluster.

        Parameters
        ----------
        strategy : callable
            A query function of :mod:`skpeal.strategies` (or one wrapped by
            :func:`~skpeal.strategies.class_balanced`); other query functions run on
            gathered probabilities and features (pools up to ``exact_max_rows``).
        classifier : estimator or modAL learner
            Fitted and picklable.
        X_pool : sequence of image paths, or any images the estimator accepts
            The unlabelled pool.
        n_instances : int, default=1
            Number of rows to pick, in ``[1, n_samples]``.
        random_state : None, int, SeedSequence or numpy Generator, default=None
            As for the in-process strategy. A Generator must be over PCG64 or PCG64DXSM
            (what ``np.random.default_rng`` makes) for the exact per-block tie breaking.
        X_labeled, y_labeled : images and labels, default=None
            The labelled set (or the learner's ``X_training`` / ``y_training``).
        **kwargs : dict
            Ignored, as by the in-process strategies.

        Returns
        -------
        indices : ndarray of shape (n_instances,)
            Unique pool indices, in the order the in-process strategy returns them.
        scores : ndarray of shape (n_instances,)
            The strategy's scores of the picked rows.
        """
        if not callable(strategy):
            raise ValueError(f"strategy must be a callable query function, got {strategy!r}")
        n_pool = _pool.num_samples(X_pool)
        n = check_n_instances(n_instances, n_pool)
        pcb = strategy if isinstance(strategy, ClassBalanced) else None
        base = pcb.strategy if pcb else strategy
        record = get_strategy(base, None)  # None: a foreign query function
        if pcb:
            rng = pcb.rng if random_state is None else as_generator(random_state)
            n_cand = pcb.n_candidates(n, n_pool)
        else:
            rng = as_generator(random_state)
            n_cand = n
        est = _pool.estimator(classifier)
        X_lab, y_lab = _pool.labeled_set(classifier, X_labeled, y_labeled, need="",
                                         strategy=getattr(strategy, "__name__", "strategy"))
        if record is not None and record.topk:
            cand, scores, pseudo = self._topk(record, classifier, est, X_pool, n_cand, rng,
                                              X_lab, y_lab)
        elif record is not None and not record.uses_model:  # e.g. random: on the driver
            cand, scores, _ = record.impl(None, X_pool, n_cand, rng)
            cand = np.asarray(cand, dtype=np.intp)
            scores = np.asarray(scores, dtype=np.float64)
            if not pcb:
                self.stats_ = {"n_blocks": 0, "n_actors": 0, "n_encoded": 0}
                return cand, scores
            sub = _pool.take_rows(X_pool, cand)
            pseudo = self.predict_proba(est, sub).argmax(axis=1)
        elif n_pool <= self.exact_max_rows:
            return self._gathered(strategy, classifier, est, X_pool, n, random_state,
                                  X_lab, y_lab)
        elif record is not None and record.shardable and not pcb:
            return self._sharded(record, classifier, est, X_pool, n, rng, X_lab, y_lab)
        else:
            raise ValueError(
                f"{getattr(strategy, '__name__', strategy)!r} on a pool of {n_pool} rows: "
                f"above exact_max_rows={self.exact_max_rows} only the strategies registered "
                "as top-k (entropy, margin, least-confidence, featdist...) or as not using "
                "the model (random), with or without class_balanced, and those registered "
                "as shardable (coreset, badge...) run distributed; raise exact_max_rows to "
                "gather the pool"
            )
        if not pcb:
            return cand, scores
        picks = pcb.picks(classifier, pseudo, len(_pool.classes(classifier)), n, rng,
                          X_lab, y_lab)
        return cand[picks], scores[picks]

    def score(self, classifier, X_pool, *, features=False, progress=None):
        """Probabilities (and features) of every pool row, scored on Ray and gathered.

        The driver holds ``n_rows * n_classes`` float64 probabilities, plus ``n_rows *
        n_features`` float32 features with ``features=True``: for a labelling session,
        whose page shows a suggestion for every image; :meth:`query` gathers nothing
        for the top-k strategies.

        Parameters
        ----------
        classifier : fitted classifier
            A fitted :class:`skpeal.CLIPAdapterClassifier` (or a modAL learner of one).
        X_pool : sequence of images
            The pool (paths are read by the actors: they must be readable on every node).
        features : bool, default=False
            Also gather the image features.
        progress : callable, optional
            ``progress(done)`` with the number of rows scored so far, after every block.

        Returns
        -------
        proba : ndarray of shape (n_rows, n_classes)
            Columns in ``classes_`` order.
        features : ndarray of shape (n_rows, n_features) or None
            The image features (float32); None without ``features``.
        """
        est = _pool.estimator(classifier)
        n_pool = _pool.num_samples(X_pool)
        proba = feats = None
        done = 0
        for b in self._run(est, X_pool, {"mode": "gather", "features": bool(features)}):
            if proba is None:
                proba = np.empty((n_pool, b["proba"].shape[1]))
                if features:
                    feats = np.empty((n_pool, b["features"].shape[1]), dtype=np.float32)
            proba[b["idx"]] = b["proba"]
            if features:
                feats[b["idx"]] = b["features"]
            done += int(b["idx"].shape[0])
            if progress is not None:
                progress(done)
        return proba, feats

    # ------------------------------------------------------------------ strategies
    def _topk(self, record, classifier, est, X_pool, k, rng, X_lab, y_lab):
        bitgen = rng.bit_generator
        if type(bitgen).__name__ not in _EXACT_RNG:
            raise ValueError(
                "random_state: a Generator over PCG64 or PCG64DXSM (np.random.default_rng) "
                f"is needed for exact distributed tie breaking, got {type(bitgen).__name__}"
            )
        task = {"mode": "topk", "strategy": record, "k": k, "rng_state": bitgen.state}
        labeled = None
        if record.needs_labels:
            X_lab, y_lab = _pool.labeled_set(classifier, X_lab, y_lab, need="Xy",
                                             strategy=record.query.__name__)
            _pool.class_index(_pool.classes(classifier), y_lab)  # unknown labels fail here
            labeled = (_pool.features(classifier, X_lab), y_lab)
        keep = None
        for b in self._run(est, X_pool, task, labeled=labeled):
            keep = _merge_topk(keep, b, k)
        _skip_draws(rng, _pool.num_samples(X_pool))  # as in-process: one draw per pool row
        return keep["idx"].astype(np.intp), keep["score"], keep["pseudo"]

    def _gathered(self, strategy, classifier, est, X_pool, n, random_state, X_lab, y_lab):
        n_pool = _pool.num_samples(X_pool)
        proba = feats = None
        for b in self._run(est, X_pool, {"mode": "gather", "features": True}):
            if proba is None:
                proba = np.empty((n_pool, b["proba"].shape[1]))
                feats = np.empty((n_pool, b["features"].shape[1]))
            proba[b["idx"]], feats[b["idx"]] = b["proba"], b["features"]
        labeled, kw = None, {}
        if X_lab is not None:
            labeled = _lazy(lambda: _pool.features(classifier, X_lab))
            kw["X_labeled"] = np.arange(_pool.num_samples(X_lab))
        if y_lab is not None:
            kw["y_labeled"] = y_lab
        model = _precomputed(proba, feats, _pool.classes(classifier), labeled)
        idx, scores = strategy(model, np.arange(n_pool), n, random_state=random_state, **kw)
        return np.asarray(idx, dtype=np.intp), np.asarray(scores, dtype=np.float64)

    def _sharded(self, record, classifier, est, X_pool, n, rng, X_lab, y_lab):
        labeled, kw = None, {}
        if record.needs_labels:
            X_lab, _ = _pool.labeled_set(classifier, X_lab, y_lab, need="X",
                                         strategy=record.query.__name__)
            labeled = _pool.features(classifier, X_lab)
            kw["X_labeled"] = np.arange(labeled.shape[0])
        task = {"mode": "shard", "strategy": record, "k": n,
                "seed": int(rng.integers(np.iinfo(np.int64).max))}
        parts = list(self._run(est, X_pool, task, labeled=labeled))
        idx = np.concatenate([p["idx"] for p in parts]).astype(np.intp)
        model = _precomputed(np.concatenate([p["proba"] for p in parts]),
                             np.concatenate([p["features"] for p in parts]),
                             _pool.classes(classifier), labeled)
        pick, scores = record.query(model, np.arange(idx.size), n, random_state=rng, **kw)
        return idx[pick], np.asarray(scores, dtype=np.float64)

    # ------------------------------------------------------------------ the Ray pipeline
    def _run(self, est, X_pool, task, labeled=None):
        """Yield the actors' outputs, one dict of arrays per block (in completion order)."""
        import ray  # optional dependency (skpeal[ray])

        init_ray(self.address)
        n = _pool.num_samples(X_pool)
        gpus = float(self.num_gpus_per_actor or 0)
        cpus = float(self.num_cpus_per_actor)
        n_actors = self._n_actors(ray, cpus, gpus)
        bounds = plan_blocks(n, _internals.inference_batch_size(est), self.block_size,
                             n_actors)
        store, space = self._store(est)
        payload = ray.put({
            "estimator": est,
            "blocks": [ray.put(X_pool[s:e]) for s, e in bounds],
            "starts": [s for s, _ in bounds],
            "task": task,
            "store": store,
            "space": space,
            "labeled": labeled,
            "device": "cuda" if gpus > 0 else None,
            "num_workers": self.decode_workers,
        })
        pool = self._actor_pool(ray, n_actors, cpus, gpus)
        self.stats_ = {"n_blocks": len(bounds), "n_actors": min(n_actors, len(bounds)),
                       "block_size": bounds[0][1] - bounds[0][0], "n_encoded": 0,
                       "rows_returned": 0, "bytes_returned": 0, "n_retried": 0,
                       "nodes": set()}
        for batch in pool.run(ray, [payload], len(bounds), self.max_task_retries,
                              self.stats_):
            self.stats_["n_encoded"] += int(batch["n_encoded"].sum())
            self.stats_["rows_returned"] += int(batch["idx"].shape[0])
            self.stats_["bytes_returned"] += sum(int(np.asarray(v).nbytes)
                                                 for v in batch.values())
            yield batch
        self.stats_["nodes"] = sorted(self.stats_["nodes"])

    def _actor_pool(self, ray, n, cpus, gpus):
        """The actors: started on the first query, kept for later ones (shared by the
        scorers of this Ray session with the same settings)."""
        self._pool = shared_pool(ray, n, cpus, gpus, self.max_restarts)
        return self._pool

    def close(self):
        """Stop this scorer's actors (a later query starts new ones).

        Other scorers of this session with the same settings share them: they start new
        ones on their next query.

        Returns
        -------
        self : RayPoolScorer
            The scorer, without actors.
        """
        pool = getattr(self, "_pool", None)
        if pool is not None:
            import ray  # optional dependency (skpeal[ray])

            if ray.is_initialized():
                close_pool(ray, pool)
            self._pool = None
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_pool", None)  # actor handles belong to this driver's session
        return state

    def _n_actors(self, ray, cpus, gpus):
        if self.num_actors is not None:
            return check_int("num_actors", self.num_actors, low=1)
        res = ray.cluster_resources()
        n = int(res.get("CPU", 1) // max(cpus, 1e-9)) if cpus > 0 else 1
        if gpus > 0:
            n = min(n, int(res.get("GPU", 0) // gpus))
            if n < 1:
                raise ValueError(f"num_gpus_per_actor={gpus} but the cluster has no free GPU")
        return max(1, n)

    def _store(self, est):
        if self.feature_store is None:
            return None, None
        if not _internals.image_tower_frozen(est):
            raise ValueError(
                "feature_store needs a fitted CLIPAdapterClassifier with a frozen image "
                "tower (adapter='prompt' or lora_towers='text'): trained image features "
                "change every round"
            )
        store = self.feature_store
        if not isinstance(store, ParquetFeatureStore):
            store = ParquetFeatureStore(store)
        return store, _internals.feature_space_id(est)


def plan_blocks(n, batch_size, block_size=None, n_actors=1):
    """Contiguous ``(start, stop)`` blocks of ``n`` rows, sizes a multiple of the batch.

    Parameters
    ----------
    n : int
        Pool size.
    batch_size : int
        The estimator's inference batch size.
    block_size : int or None, default=None
        Wanted rows per block (rounded up to a multiple of ``batch_size``); None: about
        four blocks per actor, between one batch and 8,192 rows.
    n_actors : int, default=1
        Actors that will share the blocks.

    Returns
    -------
    bounds : list of (int, int)
        Half-open row ranges covering ``0 .. n`` in order.
    """
    if block_size is None:
        block_size = min(8192, max(batch_size, math.ceil(n / (4 * max(1, n_actors)))))
    else:
        block_size = check_int("block_size", block_size, low=1)
    size = math.ceil(block_size / batch_size) * batch_size
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _merge_topk(keep, batch, k):
    """The top ``k`` rows of ``keep`` and ``batch`` in the in-process order."""
    cols = ("idx", "score", "key", "pseudo")
    if keep is None:
        merged = {c: np.asarray(batch[c]) for c in cols}
    else:
        merged = {c: np.concatenate([keep[c], batch[c]]) for c in cols}
    order = np.lexsort((merged["idx"], merged["key"], -merged["score"]))[:k]
    return {c: merged[c][order] for c in cols}


def _skip_draws(rng, n, chunk=1 << 20):
    """Advance ``rng`` as ``rng.random(n)`` does, without holding ``n`` values."""
    while n > 0:
        rng.random(min(chunk, n))
        n -= chunk


def _lazy(fn):
    memo = []

    def get():
        if not memo:
            memo.append(fn())
        return memo[0]

    return get
