"""Hostile requests to both web apps (the page and Label Studio's ML backend): a clear 4xx
or 5xx with a message, never a traceback (500), never a file outside the images."""

import errno
import os
import time

import pytest

pytest.importorskip("fastapi", reason="the web app needs the 'label' extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from skpeal.labeling.app import create_app  # noqa: E402
from skpeal.labeling.labelstudio import SessionBackend, ml_backend_app  # noqa: E402

HUGE_IDS = ["1" * 30, str(2**63), str(10**30), "9" * 5000, "-1"]


def _wait_idle(client, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = client.get("/api/status").json()
        if st["ready"] and not st["busy"]:
            return st
        time.sleep(0.05)
    raise AssertionError(f"the session did not become idle: {st}")


@pytest.fixture
def app_client(session_factory):
    session = session_factory(batch_size=4)
    app = create_app(session)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.session = session
        _wait_idle(client)
        yield client
    app.state.worker.stop(timeout=5)


@pytest.fixture
def ml_client(session_factory):
    session = session_factory(batch_size=4).prepare()
    with TestClient(ml_backend_app(SessionBackend(session)),
                    raise_server_exceptions=False) as client:
        client.session = session
        yield client


def test_a_registered_image_replaced_by_a_symlink_is_not_served(app_client, tmp_path):
    s = app_client.session
    image_id, path = s.store.images()[0]
    assert app_client.get(f"/api/image/{image_id}?full=1").status_code == 200
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:secret")
    os.unlink(path)
    os.symlink(secret, path)
    for url in (f"/api/image/{image_id}?full=1", f"/api/image/{image_id}"):
        r = app_client.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "secret" not in r.text and "replaced" in r.json()["detail"]
    # a folder on the way replaced by a link to a copy is refused too
    other_id, other = s.store.images()[1]
    folder = os.path.dirname(other)
    os.rename(folder, folder + ".moved")
    os.symlink(folder + ".moved", folder)
    assert app_client.get(f"/api/image/{other_id}?full=1").status_code == 404


@pytest.mark.parametrize("image_id", HUGE_IDS)
def test_out_of_range_image_ids_are_refused_before_the_database(app_client, image_id):
    r = app_client.get(f"/api/image/{image_id}")
    assert r.status_code in (404, 422), r.text
    assert "detail" in r.json()
    body = '{"client": "a", "answers": [{"image_id": ' + image_id + ', "label": "red"}]}'
    r = app_client.post("/api/answers", content=body,
                        headers={"content-type": "application/json"})
    if len(image_id) > 4300:  # Python's JSON refuses such integers: a clear 400
        assert r.status_code == 400 and "not JSON" in r.json()["detail"], r.text
    else:
        assert r.status_code == 404 and "unknown" in r.json()["detail"], r.text
    assert app_client.session.store.history() == []


def test_deeply_nested_json_is_refused_with_400(app_client, ml_client):
    for client, url, n in ((app_client, "/api/answers", 30_000), (ml_client, "/predict", 60_000),
                           (ml_client, "/webhook", 60_000)):
        deep = "[" * n + "]" * n
        r = client.post(url, content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested deeper" in r.json()["detail"], (url, r.text)
    # moderately deep (beyond the limit, below Python's recursion limit): refused too
    mid = '{"client": "a", "answers": ' + "[" * 40 + "]" * 40 + "}"
    r = app_client.post("/api/answers", content=mid, headers={"content-type":
                                                              "application/json"})
    assert r.status_code == 400 and "nested deeper" in r.json()["detail"]


def test_oversized_request_headers_get_431(app_client, ml_client):
    for client, url in ((app_client, "/api/status"), (ml_client, "/health")):
        r = client.get(url, headers={"x-junk": "a" * 100_000})
        assert r.status_code == 431 and "header" in r.json()["detail"], url
        assert client.get(url).status_code == 200


def test_ml_backend_task_ids_of_any_size_get_422(ml_client):
    for image_id in HUGE_IDS:
        for value in (f'"{image_id}"', image_id):
            body = ('{"tasks": [{"id": 1, "data": {"image": "x.png", "skpeal_id": '
                    + value + "}}]}")
            r = ml_client.post("/predict", content=body,
                               headers={"content-type": "application/json"})
            if len(image_id) > 4300 and not value.startswith('"'):
                assert r.status_code == 400, r.text
                continue
            assert r.status_code == 422 and "not an image id" in r.json()["detail"], r.text


def test_a_full_disk_answers_507_and_loses_nothing_acknowledged(app_client, ml_client,
                                                                monkeypatch):
    s = app_client.session
    item = app_client.get("/api/batch", params={"client": "a"}).json()["items"][0]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(s, "answer", full)
    r = app_client.post("/api/answers", json={"client": "a", "answers": [
        {"image_id": item["image_id"], "label": "red"}]})
    assert r.status_code == 507 and "disk is full" in r.json()["detail"]
    assert s.store.history() == []
    monkeypatch.undo()
    # SQLite's own "database or disk is full" too, on the ML backend's webhook
    import sqlite3

    def sqlite_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ml_client.session, "label", sqlite_full)
    image_id = ml_client.session.store.images()[0][0]
    r = ml_client.post("/webhook", json={
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 1, "result": [{"from_name": "choice", "to_name": "image",
                                            "type": "choices",
                                            "value": {"choices": ["red"]}}]},
        "task": {"id": 1, "data": {"image": "x.png", "skpeal_id": image_id}}})
    assert r.status_code == 507 and "disk is full" in r.json()["detail"]


def test_a_refit_that_fails_for_a_full_disk_says_so_in_the_status(app_client, monkeypatch):
    s = app_client.session
    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(s, "_save_adapter", full)
    r = app_client.post("/api/answers", json={"client": "a", "answers": [
        {"image_id": it["image_id"], "label": "red"} for it in items]})
    assert r.status_code == 200 and r.json()["refit"] is True  # the labels are saved
    st = _wait_idle(app_client)
    assert st["round"] == 0 and st["n_labelled"] == len(items)
    assert st["error"] and "disk is full" in st["error"] and "round 1" in st["error"], st
    # asking again refits again, and says so again while the disk is full
    assert "labels are saved" in st["error"] and st["state"]["error"] == st["error"]
    assert app_client.post("/api/refit").status_code == 200
    st = _wait_idle(app_client)
    assert st["error"] and "disk is full" in st["error"] and st["round"] == 0
    # space again: the next refit clears the error
    monkeypatch.undo()
    assert app_client.post("/api/refit").status_code == 200
    st = _wait_idle(app_client)
    assert st["error"] is None and st["round"] == 1
