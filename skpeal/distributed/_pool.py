"""Scoring actors that live across queries, and the driver's loop that feeds them blocks.

An actor is started once per :class:`~skpeal.distributed.RayPoolScorer` (not per query):
torch is imported and the backbone built (``load_backbone(shared=True)`` keeps it in the
actor process) on its first block. Each query then sends only what changed: the fitted
estimator's pickle (its adapter weights and spec, never the backbone), the task and the
block references. A dead actor (its process killed, its node stopped) is restarted by Ray
where there is room; its block goes back to the queue for any live actor, so a lost block
is scored again and never silently missing.
"""

from __future__ import annotations

import collections
import time

from ._actor import BlockActor

#: Seconds without any live actor (every one dead or restarting, blocks still queued)
#: before a query is refused.
STALL_TIMEOUT_S = 300.0


class ScoringActor:
    """A Ray actor holding one query's :class:`BlockActor` state at a time."""

    def __init__(self):
        self._key = None
        self._impl = None

    def node_id(self):
        import ray  # optional dependency (skpeal[ray]): only actors and the driver

        return ray.get_runtime_context().get_node_id()

    def score(self, key, payload, block):
        """Score block ``block`` of query ``key`` (``payload``: ``[ObjectRef]`` of it)."""
        import ray

        if self._key != key:  # a new query: unpickle its estimator (backbone kept cached)
            t = time.perf_counter()
            self._impl = BlockActor(payload)
            self._key = key
            setup = time.perf_counter() - t
        else:
            setup = 0.0
        out = self._impl({"id": [block]})
        return out, ray.get_runtime_context().get_node_id(), setup


class ActorPool:
    """``n`` :class:`ScoringActor` handles with their Ray options; see :meth:`run`."""

    def __init__(self, ray, n, num_cpus, num_gpus, max_restarts):
        opts = {"num_cpus": num_cpus, "max_restarts": int(max_restarts),
                "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        if num_gpus > 0:
            opts["num_gpus"] = num_gpus
        cls = ray.remote(ScoringActor).options(**opts)
        self.actors = [cls.remote() for _ in range(n)]
        self._queries = 0
        # actor -> ping ObjectRef: starting, or failed; given work once it answers (an actor
        # that cannot start, its CPUs held elsewhere, never holds a block)
        self._reviving = {a: h.node_id.remote() for a, h in enumerate(self.actors)}
        self._dead = set()  # actors without restarts left
        self._last_error = None  # the last failure of an actor (for the refusal message)

    def close(self, ray):
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone with its node or session
                pass
        self.actors = []

    def run(self, ray, payload, n_blocks, max_task_retries=-1, stats=None):
        """Yield ``(output, node_id)`` for every block ``0 .. n_blocks - 1`` (completion order).

        One block in flight per actor. A block whose actor dies is queued again (at most
        ``max_task_retries`` times, -1: no limit); an actor that failed gets work again
        once it answers a ping (after Ray restarted it). Raises RuntimeError when no actor
        is alive for :data:`STALL_TIMEOUT_S` while blocks remain.
        """
        from ray.exceptions import (
            ActorUnavailableError,
            ObjectLostError,
            RayActorError,
            WorkerCrashedError,
        )

        lost = (RayActorError, WorkerCrashedError, ObjectLostError)
        self._queries += 1
        key = (id(self), self._queries)
        todo = collections.deque(range(n_blocks))
        tries = collections.Counter()
        idle = [a for a in range(len(self.actors))
                if a not in self._reviving and a not in self._dead]
        # ObjectRef -> ("score", actor, block) or ("ping", actor, None); actors that failed
        # in an earlier query (their node stopped, say) get work only once they answer
        flight = {ref: ("ping", a, None) for a, ref in self._reviving.items()}
        done = 0
        last_alive = time.monotonic()
        while done < n_blocks:
            if not flight and not idle:  # every actor dead for good: nothing can score
                raise RuntimeError(
                    f"Ray pool scoring: every scoring actor died ({len(self._dead)} of "
                    f"{len(self.actors)}) with {len(todo)} of {n_blocks} blocks left; the "
                    f"query is refused rather than returned short. Last error: "
                    f"{self._last_error!r}")
            while todo and idle:
                a = idle.pop(0)
                b = todo.popleft()
                ref = self.actors[a].score.remote(key, payload, b)
                flight[ref] = ("score", a, b)
            ready, _ = ray.wait(list(flight), num_returns=1, timeout=5.0)
            if not ready:
                if any(kind == "score" for kind, _, _ in flight.values()):
                    last_alive = time.monotonic()
                elif time.monotonic() - last_alive > STALL_TIMEOUT_S:
                    raise RuntimeError(
                        f"Ray pool scoring: no scoring actor alive for {STALL_TIMEOUT_S:.0f} s "
                        f"with {len(todo)} of {n_blocks} blocks left (their nodes died, or the "
                        "cluster has no room to start them: are its CPUs held by other "
                        "actors, e.g. another RayPoolScorer's? close() it); the query is "
                        "refused rather than returned short"
                    )
                continue
            kind, a, b = flight.pop(ready[0])
            last_alive = time.monotonic()
            try:
                value = ray.get(ready[0])
            except lost as exc:
                if kind == "score":
                    tries[b] += 1
                    if 0 <= max_task_retries < tries[b]:
                        raise RuntimeError(
                            f"Ray pool scoring: block {b} lost {tries[b]} times (its actor "
                            f"or node died; max_task_retries={max_task_retries}): {exc}"
                        ) from exc
                    todo.appendleft(b)
                    if stats is not None:
                        stats["n_retried"] = stats.get("n_retried", 0) + 1
                self._last_error = exc
                if kind == "ping" and not isinstance(exc, ActorUnavailableError):
                    self._reviving.pop(a, None)
                    self._dead.add(a)  # dead for good (no restarts left): no more work
                    continue
                if kind == "ping":
                    time.sleep(1.0)
                ping = self.actors[a].node_id.remote()  # back to work once restarted
                flight[ping] = ("ping", a, None)
                self._reviving[a] = ping
                continue
            if kind == "ping":
                self._reviving.pop(a, None)
                idle.append(a)
                continue
            out, node, setup = value
            done += 1
            idle.append(a)
            if stats is not None:
                stats.setdefault("nodes", set()).add(node)
                stats["setup_s"] = max(stats.get("setup_s", 0.0), setup)
            yield out


_POOLS: dict = {}


def shared_pool(ray, n, num_cpus, num_gpus, max_restarts):
    """The actor pool of this Ray session with these settings (started on first use).

    Scorers with equal settings share their actors, so two of them in one session do not
    compete for the cluster's CPUs; pools of other sessions are forgotten.
    """
    key = (n, num_cpus, num_gpus, max_restarts, _session(ray))
    for k in [k for k in _POOLS if k[-1] != key[-1]]:
        del _POOLS[k]
    pool = _POOLS.get(key)
    if pool is None or not pool.actors:
        pool = _POOLS[key] = ActorPool(ray, n, num_cpus, num_gpus, max_restarts)
    return pool


def close_pool(ray, pool):
    """Stop ``pool``'s actors and forget it."""
    for k in [k for k, v in _POOLS.items() if v is pool]:
        del _POOLS[k]
    pool.close(ray)


def _session(ray):
    try:
        ctx = ray.get_runtime_context()  # job ids restart at 1 in every new cluster
        return ctx.get_job_id(), ctx.get_node_id()
    except Exception:  # noqa: BLE001 - not connected
        return None
