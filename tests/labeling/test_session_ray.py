"""The labelling session on a real two-node Ray cluster (``LabelingSession(ray=...)``,
``skpeal label --ray``), through the web app's API.

The cluster is the one of ``tests/distributed/cluster.py`` (``ray start --head`` plus a
second ``ray start``); like ``tests/distributed/test_multinode.py`` the tests run in a
fresh pytest process (a local Ray session of an earlier test module leaves state that
breaks a token-less cluster's actors).
"""

import os
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from skpeal.labeling import LabelingSession  # noqa: E402
from skpeal.labeling.app import create_app  # noqa: E402
from tests.labeling.conftest import CLASSES, make_images, tiny_estimator  # noqa: E402

_CHILD = os.environ.get("SKPEAL_LABEL_RAY_CHILD") == "1"


@pytest.mark.skipif(_CHILD, reason="the child process runs the tests themselves")
def test_session_on_ray_in_a_fresh_process():
    from tests.distributed.cluster import run_in_fresh_process

    run_in_fresh_process(__file__, "SKPEAL_LABEL_RAY_CHILD", n_passed=1, timeout=600)


child_only = pytest.mark.skipif(not _CHILD, reason="run by test_session_on_ray_in_a_fresh_process")


@pytest.fixture(scope="module")
def cluster():
    from tests.distributed.cluster import LocalCluster

    if ray.is_initialized():
        ray.shutdown()
    with LocalCluster(n_workers=1, num_cpus=1) as c:
        yield c
    if ray.is_initialized():
        ray.shutdown()


def _wait(client, pred, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = client.get("/api/status").json()
        if pred(st):
            return st
        time.sleep(0.05)
    raise AssertionError(f"the session never reached the state: {st}")


@child_only
def test_label_session_on_a_two_node_cluster_streams_then_scores_from_the_store(
        tmp_path, cluster):
    # 200 images (> the 64 encoded first): the first batch comes from the in-process
    # sample while the cluster's actors (started now: seconds) encode the rest
    truth = make_images(tmp_path / "images", n=200)
    s = LabelingSession(tmp_path / "project", images=tmp_path / "images", classes=CLASSES,
                        estimator=tiny_estimator(), batch_size=5, strategy="auto",
                        ray=cluster.address)
    try:
        app = create_app(s)
        with TestClient(app) as client:
            st = _wait(client, lambda st: st["ready"])
            first = client.get("/api/batch", params={"client": "a"}).json()
            # shown before the pool was encoded (the actors were still starting)
            assert st["state"]["phase"] == "encoding" and st["state"]["done"] < 200
            assert first["ready"] and len(first["items"]) == 5
            st = _wait(client, lambda st: st["state"]["phase"] == "ready" and not st["busy"])
            assert st["state"]["done"] == 200
            # round 0's scores over the whole pool came from the cluster: the same
            # probabilities as in-process, and the features auto's DropQuery uses
            paths = s._paths
            want = s.model.predict_proba(paths)
            np.testing.assert_allclose(s._scores.proba, want, atol=1e-5)
            assert s._scores.features is not None and s._scores.features.shape[0] == 200
            np.testing.assert_allclose(s._scores.features, s.model.embed(paths), atol=1e-5)
            assert s._ray.stats_["n_encoded"] == 200 - 64
            assert set(s._ray.stats_["nodes"]) <= {n["NodeID"] for n in ray.nodes()}
            # the batch shown first is still the pending batch (nothing the person saw is
            # replaced under them)
            again = client.get("/api/batch", params={"client": "a"}).json()["items"]
            assert [i["image_id"] for i in again] == [i["image_id"] for i in first["items"]]
            by_id = dict(s.store.images())
            answers = [{"image_id": it["image_id"], "label": truth[by_id[it["image_id"]]]}
                       for it in first["items"]]
            r = client.post("/api/answers", json={"client": "a", "answers": answers})
            assert r.status_code == 200 and r.json()["saved"] == 5
            st = _wait(client, lambda st: st["round"] == 1 and not st["busy"])
            assert st["n_labelled"] == 5 and st["error"] is None
            # round 1: a new adapter scored on the cluster from the project's feature
            # store: nothing encoded again, the same scores as in-process
            assert s._ray.stats_["n_encoded"] == 0
            np.testing.assert_allclose(s._scores.proba, s.model.predict_proba(paths),
                                       atol=1e-5)
            nxt = client.get("/api/batch", params={"client": "a"}).json()["items"]
            assert len(nxt) == 5 and not {i["image_id"] for i in nxt} & {
                a["image_id"] for a in answers}
            assert (tmp_path / "project" / "ray-features").is_dir()
        app.state.worker.stop(timeout=10)
    finally:
        s.close()
    assert not ray.is_initialized()  # the session connected, and disconnected on close
