"""skpeal.distributed on a real multi-node Ray cluster started with ``ray start``.

Two nodes on this machine (a head and a worker, each its own raylet with 1 CPU), joined
the way a user joins machines; the driver connects with ``address="auto"``. Blocks must be
scored on both nodes, a killed worker process must change no result, and a node stopped
mid-query must be survived or refused with an error, never a short result.
"""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from skpeal import CLIPAdapterClassifier  # noqa: E402
from skpeal import strategies as st  # noqa: E402
from skpeal.distributed import RayPoolScorer  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.distributed.cluster import LocalCluster  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

# A local Ray session (earlier test modules start some) leaves RAY_AUTH_MODE=token in the
# process environment, and a process that has had one Ray session keeps state of it
# (ray-project/ray#4843, #54841): connected to this token-less cluster, its actors then die
# at creation. So the tests below run in a fresh pytest process, started by the first one,
# with the cluster's auth mode.
_CHILD = os.environ.get("SKPEAL_MULTINODE_CHILD") == "1"


@pytest.mark.skipif(_CHILD, reason="the child process runs the tests themselves")
def test_multinode_in_a_fresh_process():
    from tests.distributed.cluster import run_in_fresh_process

    run_in_fresh_process(__file__, "SKPEAL_MULTINODE_CHILD", n_passed=3, timeout=900)


child_only = pytest.mark.skipif(not _CHILD, reason="run by test_multinode_in_a_fresh_process")


@pytest.fixture(autouse=True)
def _fresh_actors():
    """Each test starts its own scoring actors (a test kills or strands some)."""
    yield
    from skpeal.distributed import _pool

    if ray.is_initialized():
        for pool in list(_pool._POOLS.values()):
            _pool.close_pool(ray, pool)


class OnNode:
    """Delegates to ``est``; records the node of every scoring call in ``folder``.

    ``action="kill"``: the first call on node ``target`` kills its own worker process
    (calls on other nodes wait, up to a minute, until it happened);
    ``action="hold"``: calls on node ``target`` announce themselves and wait (so that the
    test can stop that node while a block is being scored there); ``action="meet"``: a
    call waits (up to a minute) until a call has been seen on ``target`` nodes, so that
    an actor that starts first cannot score every block before the other one is up.
    """

    def __init__(self, est, folder, action=None, target=None):
        self.est, self.folder, self.action, self.target = est, folder, action, target
        self.classes_ = est.classes_

    def predict_proba(self, X):
        node = ray.get_runtime_context().get_node_id()
        open(os.path.join(self.folder, f"node-{node}"), "a").close()
        if node == self.target:
            marker = os.path.join(self.folder, "marker")
            if self.action == "kill" and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            if self.action == "hold":
                open(marker, "w").close()
                time.sleep(120)
        elif self.action in ("kill", "hold"):  # the other nodes wait for the target's turn
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(self.folder, "marker")) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.action == "meet":
            deadline = time.monotonic() + 60
            while len(_nodes_seen(self.folder)) < self.target and time.monotonic() < deadline:
                time.sleep(0.1)
        return self.est.predict_proba(X)


def _nodes_seen(folder):
    return {f[5:] for f in os.listdir(folder) if f.startswith("node-")}


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    with LocalCluster(n_workers=1, num_cpus=1) as c:
        old = os.environ.get("RAY_ADDRESS")
        os.environ["RAY_ADDRESS"] = c.address  # what `ray start` users export, or "auto" finds
        try:
            yield c
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if old is None:
                os.environ.pop("RAY_ADDRESS", None)
            else:
                os.environ["RAY_ADDRESS"] = old


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, X_test, _ = digits
    clf = CLIPAdapterClassifier(**TINY, max_epochs=1, predict_batch_size=32).fit(X[:40], y[:40])
    # the test wrappers are not skpeal estimators: blocks are cut at 256 rows, so 768 rows
    # make three blocks for two actors
    return clf, np.concatenate([X[40:], X_test])[:768]


def _worker_node_id():
    if not ray.is_initialized():
        ray.init(address="auto")
    return next(n["NodeID"] for n in ray.nodes()
                if n["Alive"] and "node_w0" in n["Resources"])


@child_only
def test_blocks_are_scored_on_both_nodes(cluster, fitted, tmp_path):
    clf, pool = fitted
    scorer = RayPoolScorer(address="auto")
    got = scorer.query(st.entropy_sampling, OnNode(clf, str(tmp_path), "meet", 2), pool, 10,
                       random_state=0)
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2
    assert scorer.stats_["n_actors"] == 2  # one per node: 1 CPU each
    assert _nodes_seen(tmp_path) == alive
    assert set(scorer.stats_["nodes"]) == alive  # the actors' own node ids
    want = st.entropy_sampling(clf, pool, 10, random_state=0)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-9)


@child_only
def test_worker_killed_on_second_node_changes_no_result(cluster, fitted, tmp_path):
    clf, pool = fitted
    scorer = RayPoolScorer(address="auto")
    target = _worker_node_id()
    got = scorer.query(st.margin_sampling, OnNode(clf, str(tmp_path), "kill", target), pool,
                       12, random_state=1)
    assert (tmp_path / "marker").exists()  # an actor process on the worker node was killed
    want = st.margin_sampling(clf, pool, 12, random_state=1)
    np.testing.assert_array_equal(got[0], want[0])


@child_only
def test_node_stopped_mid_query_is_survived_or_refused(cluster, fitted, tmp_path):
    """`ray stop` of the worker node while it scores a block: same result, or an error."""
    clf, pool = fitted
    target = _worker_node_id()
    marker = tmp_path / "marker"

    def stop_when_busy():
        deadline = time.monotonic() + 240
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        cluster.stop_node(1)

    killer = threading.Thread(target=stop_when_busy, daemon=True)
    killer.start()
    scorer = RayPoolScorer(address="auto")
    want = st.entropy_sampling(clf, pool, 10, random_state=2)
    try:
        got = scorer.query(st.entropy_sampling, OnNode(clf, str(tmp_path), "hold", target),
                           pool, 10, random_state=2)
    except Exception as exc:  # refused: the error must say what happened
        killer.join(60)
        assert marker.exists()
        assert "node" in str(exc).lower() or "died" in str(exc).lower(), repr(exc)
    else:
        killer.join(60)
        assert marker.exists()  # the node was stopped while it held a block
        np.testing.assert_array_equal(got[0], want[0])
        assert scorer.stats_["n_blocks"] == 3
        assert scorer.stats_["n_retried"] >= 1
        # the next round on the same scorer: the stopped node's actor gets no block
        got = scorer.query(st.entropy_sampling, clf, pool, 10, random_state=3)
        np.testing.assert_array_equal(got[0], st.entropy_sampling(clf, pool, 10,
                                                                  random_state=3)[0])
        assert target not in scorer.stats_["nodes"] and scorer.stats_["nodes"]
