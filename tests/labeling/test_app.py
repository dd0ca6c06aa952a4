"""The web app's endpoints and its answers to bad requests (FastAPI's TestClient)."""

import csv
import io
import time

import pytest

pytest.importorskip("fastapi", reason="the web app needs the 'label' extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from skpeal.labeling.app import create_app  # noqa: E402

from .conftest import CLASSES  # noqa: E402


def wait_idle(client, timeout=60):
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
    with TestClient(app) as client:
        client.session = session
        wait_idle(client)
        yield client
    app.state.worker.stop(timeout=5)


def test_page_and_assets_are_served_from_the_package(app_client):
    r = app_client.get("/")
    assert r.status_code == 200 and "static/app.js" in r.text and "<script src=\"http" not in r.text
    for name in ("app.js", "style.css"):
        assert app_client.get(f"/static/{name}").status_code == 200
    assert app_client.get("/static/../store.py").status_code == 404


def test_batch_answer_refit_cycle(app_client, image_folder):
    _, truth = image_folder
    s = app_client.session
    st = app_client.get("/api/status").json()
    assert st["round"] == 0 and st["counts"] == {c: 0 for c in CLASSES}
    assert st["stop_suggestion"]["should_stop"] is False
    assert [c["name"] for c in st["stop_suggestion"]["criteria"]] == [
        "estimated_accuracy", "kappa_average"]
    batch = app_client.get("/api/batch", params={"client": "a"}).json()
    assert batch["ready"] and len(batch["items"]) == 4
    paths = {i: p for i, p in s.store.images()}
    answers = [{"image_id": it["image_id"], "label": truth[paths[it["image_id"]]]}
               for it in batch["items"]]
    answers[-1]["label"] = None  # a skip
    r = app_client.post("/api/answers", json={"client": "a", "answers": answers})
    assert r.status_code == 200 and r.json()["saved"] == 4 and r.json()["refit"] is True
    st = wait_idle(app_client)
    assert st["round"] == 1 and st["n_labelled"] == 3 and st["n_skipped"] == 1
    assert [r["n_labels"] for r in st["rounds"]] == [0, 3]
    nxt = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    assert not {it["image_id"] for it in nxt} & {a["image_id"] for a in answers}
    img = app_client.get(f"/api/image/{nxt[0]['image_id']}")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO(app_client.get("/api/export.csv").text)))
    assert len(rows) == 3
    undone = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert undone["kind"] == "skip"
    back = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    assert back[0]["image_id"] == answers[-1]["image_id"]


def test_two_tabs_get_disjoint_batches_and_both_answers_are_kept(app_client):
    a = app_client.get("/api/batch", params={"client": "tab-a"}).json()["items"]
    b = app_client.get("/api/batch", params={"client": "tab-b"}).json()["items"]
    assert not {x["image_id"] for x in a} & {x["image_id"] for x in b}
    image = a[0]["image_id"]
    for client, label in (("tab-a", "red"), ("tab-b", "blue")):
        r = app_client.post("/api/answers", json={"client": client, "answers": [
            {"image_id": image, "label": label}]})
        assert r.status_code == 200
    hist = [h for h in app_client.session.store.history() if h["image_id"] == image]
    assert [(h["client"], h["label"]) for h in hist] == [("tab-a", "red"), ("tab-b", "blue")]
    assert app_client.session.store.labelled()[image] == "blue"


BAD_REQUESTS = [
    # (method, url, kwargs, expected status, words in the message)
    ("post", "/api/answers", dict(content=b"{not json", headers={
        "content-type": "application/json"}), 400, "malformed JSON"),
    ("post", "/api/answers", dict(content=b'{"client": "a"}', headers={
        "content-type": "text/plain"}), 415, "Content-Type"),
    ("post", "/api/answers", dict(content=b"[" + b"1," * 40000 + b"1]", headers={
        "content-type": "application/json"}), 413, "too large"),
    ("post", "/api/answers", dict(json=[1, 2]), 422, "JSON object"),
    ("post", "/api/answers", dict(json={"answers": [{"image_id": 1, "label": "red"}]}), 422,
     "client"),
    ("post", "/api/answers", dict(json={"client": "a", "answers": []}), 422, "non-empty list"),
    ("post", "/api/answers", dict(json={"client": "a", "answers": [
        {"image_id": 99999, "label": "red"}]}), 404, "unknown image id 99999"),
    ("post", "/api/answers", dict(json={"client": "a", "answers": [
        {"image_id": 1, "label": "red"}, {"image_id": 2, "label": "purple"}]}), 422,
     "'purple' is not one of the classes"),
    ("post", "/api/answers", dict(json={"client": "a", "answers": [
        {"image_id": "1", "label": "red"}]}), 422, "must be an integer"),
    ("post", "/api/answers", dict(json={"client": "a", "answers": [
        {"image_id": True, "label": "red"}]}), 422, "must be an integer"),
    ("post", "/api/answers", dict(json={"client": "a", "answers": [
        {"image_id": 1, "label": "red", "path": "/etc/passwd"}]}), 422, "must be an object"),
    ("post", "/api/answers", dict(json={"client": "x" * 500, "answers": [
        {"image_id": 1, "label": "red"}]}), 422, "client"),
    ("post", "/api/undo", dict(content=b"", headers={"content-type": "application/json"}),
     400, "malformed JSON"),
    ("get", "/api/batch", dict(), 422, "client"),
    ("get", "/api/image/99999", dict(), 404, "unknown image id"),
    ("get", "/api/image/-1", dict(), 404, "unknown image id"),
    ("get", "/api/image/../../../../etc/passwd", dict(), 404, ""),
    ("get", "/api/image/..%2F..%2Fetc%2Fpasswd", dict(), 404, ""),
    ("get", "/api/image/%2Fetc%2Fpasswd", dict(), 404, ""),
    ("get", "/api/image/1.5", dict(), 422, ""),
]


@pytest.mark.parametrize("method,url,kwargs,code,words", BAD_REQUESTS,
                         ids=[f"{m} {u} {c}" for m, u, _, c, _ in BAD_REQUESTS])
def test_bad_requests_get_4xx_with_a_message_and_change_nothing(app_client, method, url, kwargs,
                                                                 code, words):
    store = app_client.session.store
    before = (store.history(), store.pending())
    r = getattr(app_client, method)(url, **kwargs)
    assert r.status_code == code, r.text
    if words:
        assert words in r.json()["detail"] if isinstance(r.json()["detail"], str) \
            else words in str(r.json()["detail"])
    assert (store.history(), store.pending()) == before


def test_symlink_out_of_the_folder_is_never_served(tmp_path, image_folder, session_factory):
    folder, _ = image_folder
    secret = tmp_path / "secret.png"
    secret.write_bytes((folder / "part0" / "img000.png").read_bytes())
    (folder / "evil.png").symlink_to(secret)
    s = session_factory()
    assert all(p != str(secret) and not p.endswith("evil.png") for _, p in s.store.images())
    assert len(s.store.images()) == 45


def test_token_is_required_on_every_request(session_factory):
    session = session_factory()
    app = create_app(session, token="s3cret-token")
    with TestClient(app) as client:
        for url in ("/", "/api/status", "/static/app.js", "/api/image/1", "/api/export.csv"):
            assert client.get(url).status_code == 401
            assert client.get(url, headers={"X-Skpeal-Token": "wrong"}).status_code == 401
        r = client.post("/api/answers", json={"client": "a", "answers": [
            {"image_id": 1, "label": "red"}]})
        assert r.status_code == 401 and "token" in r.json()["detail"]
        assert session.store.history() == []
        assert client.get("/api/status", headers={"X-Skpeal-Token": "s3cret-token"}
                          ).status_code == 200
        r = client.get("/?token=s3cret-token")
        assert r.status_code == 200 and "skpeal_token" in r.headers["set-cookie"]
        assert client.get("/api/status").status_code == 200  # the cookie now carries it
    app.state.worker.stop(timeout=5)


def test_loopback_server_refuses_other_host_headers(session_factory):
    session = session_factory()
    app = create_app(session, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/api/status").status_code == 400
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/status").status_code == 200
    app.state.worker.stop(timeout=5)


def test_serve_prints_a_token_url_for_a_non_loopback_host(session_factory, monkeypatch):
    import uvicorn

    from skpeal.labeling.app import serve

    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(sockets))
    lines = []
    session = session_factory()
    # 127.0.0.2 is on the loopback interface but is not a loopback *name*: treated as any
    # other host, so the URL carries a token
    url = serve(session, host="127.0.0.2", port=0, open_message=lines.append)
    assert ran and "?token=" in url and url in lines[0]
    assert len(url.split("token=")[1]) >= 24
    url = serve(session, host="127.0.0.1", port=0, open_message=lines.append)
    assert "token" not in url and url.startswith("http://127.0.0.1:")
    for socks in ran:
        socks[0].close()


def test_an_unreadable_image_gets_a_message_not_a_crash(app_client):
    image_id, path = app_client.session.store.images()[0]
    with open(path, "wb") as f:
        f.write(b"not a png")
    r = app_client.get(f"/api/image/{image_id}")
    assert r.status_code == 422 and "cannot be read" in r.json()["detail"]
    assert app_client.get("/api/status").status_code == 200
