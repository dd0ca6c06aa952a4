"""What runs inside a Ray actor: one block of the pool in, what the strategy needs out.

The strategy travels with the task as its registry record
(:class:`skpeal.strategies.Strategy`), so a strategy registered in the driver runs here.

Imported by Ray in the actor processes; it does not import Ray at module level.
"""

from __future__ import annotations

import numpy as np

from .. import _pool
from .._pool import PoolScores
from . import _internals
from .store import content_keys


def tie_keys(rng_state: dict, start: int, n: int) -> np.ndarray:
    """Draws ``start .. start + n`` of ``Generator(rng_state).random(n_pool)``.

    In-process, ``_top_k`` orders rows by score, then by ``rng.random(n_pool)``; a block
    jumps straight to its part of that stream (``advance``), so every row gets the same
    tie-breaking key as in-process without any process drawing the whole stream.
    """
    bitgen = getattr(np.random, rng_state["bit_generator"])()
    bitgen.state = rng_state
    bitgen.advance(start)
    return np.random.Generator(bitgen).random(n)


class BlockActor:
    """One query's state in a scoring actor (:class:`~._pool.ScoringActor`): the estimator
    (unpickled onto the actor's built backbone), the task and the block references."""

    def __init__(self, payload):
        import ray  # optional dependency: only actors and the driver of skpeal.distributed

        p = ray.get(payload[0])
        self.est = p["estimator"]  # unpickling rebuilds the backbone, once per actor
        _internals.prepare(self.est, p["device"], p["num_workers"])
        self.blocks, self.starts = p["blocks"], p["starts"]
        self.task = p["task"]
        self.store, self.space = p["store"], p["space"]
        self.labeled = p["labeled"]
        self._index = None

    def __call__(self, batch):
        import ray

        outs = []
        for b in np.asarray(batch["id"]).tolist():
            X = ray.get(self.blocks[b])
            outs.append(self.block(X, int(self.starts[b])))
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    # -- features and probabilities ------------------------------------------------------
    def proba_features(self, X, need_features):
        n = _pool.num_samples(X)
        if self.store is None:
            if need_features:
                proba, feats = _pool.proba_and_features(self.est, X, n)
            else:
                proba, feats = _pool.predict_proba(self.est, X, n), None
            return proba, feats, n
        if self._index is None:  # a snapshot per actor; rows written later are not in it
            self._index = self.store.index(self.space)
        keys = content_keys(X)
        found, hit = self.store.read(self.space, keys, self._index)
        miss = np.flatnonzero(~found)
        new = None
        if miss.size:
            new = np.asarray(self.est.embed(_pool.take_rows(X, miss)), dtype=np.float32)
            self.store.write(self.space, [keys[i] for i in miss], new)
        width = hit.shape[1] if found.any() else new.shape[1]
        feats = np.empty((n, width), dtype=np.float32)
        if found.any():
            feats[found] = hit
        if new is not None:
            feats[miss] = new
        proba = _internals.proba_from_features(self.est, feats)
        return proba, feats.astype(np.float64), int(miss.size)

    # -- one block -------------------------------------------------------------------------
    def block(self, X, start):
        task = self.task
        mode = task["mode"]
        record = task.get("strategy")  # the registry's record, sent with the task
        need = mode != "topk" or record.uses_features
        need = need and task.get("features", True)
        proba, feats, n_enc = self.proba_features(X, need)
        n = proba.shape[0]
        if mode == "gather":
            out = {"idx": np.arange(start, start + n), "proba": proba}
            if feats is not None and task.get("features", True):
                out["features"] = feats
        elif mode == "topk":
            out = self._topk(record, proba, feats, start, task)
        else:  # shard: the strategy on this block alone, its picks are the candidates
            lab = self.labeled
            model = _precomputed(proba, feats, self.est.classes_, lab)
            kw = {} if lab is None else {"X_labeled": np.arange(lab.shape[0])}
            seed = np.random.default_rng([task["seed"], start])
            k = min(task["k"], n)
            pick, _ = record.query(model, np.arange(n), k, random_state=seed, **kw)
            out = {"idx": start + pick, "proba": proba[pick], "features": feats[pick]}
        rows = out["idx"].shape[0]
        out["n_encoded"] = np.zeros(rows, dtype=np.int64)
        out["n_encoded"][0] = n_enc
        return out

    def _topk(self, record, proba, feats, start, task):
        n = proba.shape[0]
        if record.score is not None:
            scores = record.score(proba)
        else:  # a per-row score that needs more than proba: the strategy ranks every row
            lab, y_lab = self.labeled or (None, None)
            model = _precomputed(proba, feats, self.est.classes_, lab)
            kw = {} if lab is None else {"X_labeled": np.arange(lab.shape[0])}
            if y_lab is not None:
                kw["y_labeled"] = y_lab
            idx, sc = record.query(model, np.arange(n), n, random_state=0, **kw)
            scores = np.empty(n)
            scores[idx] = sc
        keys = tie_keys(task["rng_state"], start, n)
        local = np.arange(n)
        order = np.lexsort((local, keys, -scores))[: task["k"]]
        return {"idx": start + order, "score": scores[order], "key": keys[order],
                "pseudo": proba[order].argmax(axis=1)}


def _precomputed(proba, features, classes, labeled=None):
    """A :class:`~skpeal._pool.PoolScores` over a block's rows, labelled rows apart."""
    return PoolScores(classes, np.asarray(proba, dtype=np.float64), features,
                      labeled=labeled)
