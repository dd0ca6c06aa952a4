"""What runs inside a Ray actor: one block of the pool in, what the strategy needs out.

Imported by Ray in the actor processes; it does not import Ray at module level.
"""

from __future__ import annotations

import numpy as np

from .. import strategies as st
from . import _internals
from .store import content_keys

#: Score functions computed inside actors for the per-block top-k.
SCORE_FUNCTIONS = {
    "entropy": st.entropy_scores,
    "margin": st.margin_scores,
    "least_confidence": st.least_confidence_scores,
}


class Precomputed:
    """A stand-in classifier over precomputed rows, for skpeal's own strategies.

    ``predict_proba`` / ``predict_proba_embed`` take indices into the pool rows,
    ``embed`` indices into the labelled rows; the strategies then run unchanged (same
    arithmetic, same random number draws) on arrays gathered from the cluster.
    """

    def __init__(self, proba, features, classes, labeled=None):
        self.proba = np.asarray(proba, dtype=np.float64)
        self.features = features
        self.classes_ = np.asarray(classes)
        self.labeled = labeled

    def predict_proba(self, X):
        return self.proba[np.asarray(X, dtype=np.intp)]

    def predict_proba_embed(self, X):
        i = np.asarray(X, dtype=np.intp)
        return self.proba[i], self.features[i]

    def embed(self, X):
        labeled = self.labeled() if callable(self.labeled) else self.labeled
        return labeled[np.asarray(X, dtype=np.intp)]


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
    """Ray Data actor: loads the estimator once, then scores one block per call."""

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
        n = st._num_samples(X)
        if self.store is None:
            if need_features:
                proba, feats = st._proba_and_features(self.est, X, n)
            else:
                proba, feats = st._predict_proba(self.est, X, n), None
            return proba, feats, n
        if self._index is None:  # a snapshot per actor; rows written later are not in it
            self._index = self.store.index(self.space)
        keys = content_keys(X)
        found, hit = self.store.read(self.space, keys, self._index)
        miss = np.flatnonzero(~found)
        new = None
        if miss.size:
            new = np.asarray(self.est.embed(st._take_rows(X, miss)), dtype=np.float32)
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
        need = mode != "topk" or task["score"] == "featdist"
        need = need and task.get("features", True)
        proba, feats, n_enc = self.proba_features(X, need)
        n = proba.shape[0]
        if mode == "gather":
            out = {"idx": np.arange(start, start + n), "proba": proba}
            if feats is not None:
                out["features"] = feats
        elif mode == "topk":
            out = self._topk(proba, feats, start, task)
        else:  # shard: the strategy on this block alone, its picks are the candidates
            lab = self.labeled
            model = Precomputed(proba, feats, self.est.classes_, lab)
            kw = {} if lab is None else {"X_labeled": np.arange(lab.shape[0])}
            seed = np.random.default_rng([task["seed"], start])
            k = min(task["k"], n)
            pick, _ = task["strategy"](model, np.arange(n), k, random_state=seed, **kw)
            out = {"idx": start + pick, "proba": proba[pick], "features": feats[pick]}
        rows = out["idx"].shape[0]
        out["n_encoded"] = np.zeros(rows, dtype=np.int64)
        out["n_encoded"][0] = n_enc
        return out

    def _topk(self, proba, feats, start, task):
        n = proba.shape[0]
        if task["score"] == "featdist":
            lab, y_lab = self.labeled
            model = Precomputed(proba, feats, self.est.classes_, lab)
            idx, sc = st.featdist_sampling(model, np.arange(n), n, random_state=0,
                                           X_labeled=np.arange(lab.shape[0]), y_labeled=y_lab)
            scores = np.empty(n)
            scores[idx] = sc
        else:
            scores = SCORE_FUNCTIONS[task["score"]](proba)
        keys = tie_keys(task["rng_state"], start, n)
        local = np.arange(n)
        order = np.lexsort((local, keys, -scores))[: task["k"]]
        return {"idx": start + order, "score": scores[order], "key": keys[order],
                "pseudo": proba[order].argmax(axis=1)}
