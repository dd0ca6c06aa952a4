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
        ahead = getattr(client.app.state, "ahead", None)  # the batches picked ahead too
        if st["ready"] and not st["busy"] and (ahead is None or ahead.idle):
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
    # the pending batch is untouched; the reopened image comes after it with its answer
    assert [it["image_id"] for it in back[:-1]] == [it["image_id"] for it in nxt]
    assert back[-1]["image_id"] == answers[-1]["image_id"] and back[-1]["reopened"]
    assert back[-1]["picked"] and back[-1]["pick"] is None


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


def test_picks_are_stored_and_undo_undoes_the_last_pick_first(app_client, session_factory):
    s = app_client.session
    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    ids = [it["image_id"] for it in items]
    assert not any(it["picked"] for it in items)
    for image_id, label in ((ids[0], "red"), (ids[1], "green"), (ids[1], None)):
        r = app_client.post("/api/pick", json={"client": "a", "image_id": image_id,
                                               "label": label})
        assert r.status_code == 200 and r.json()["saved"] is True
    # committed: a second connection (a restarted server) reads them
    from skpeal.labeling import LabelStore

    other = LabelStore(s.project)
    assert {i: p["label"] for i, p in other.picks(ids).items()} == {ids[0]: "red", ids[1]: None}
    other.close()
    back = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    assert [it["image_id"] for it in back] == ids
    assert [(it["picked"], it["pick"]) for it in back[:3]] == [
        (True, "red"), (True, None), (False, None)]
    # undo: the last pick (the skip of ids[1]); its earlier pick is in force again
    u = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert u["action"] == "pick" and u["image_id"] == ids[1] and u["pick"] == "green"
    assert u["refit"] is False
    u = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert u["action"] == "pick" and u["image_id"] == ids[1] and u["pick"] is None
    u = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert u["action"] == "pick" and u["image_id"] == ids[0]
    # no pick left and nothing submitted: nothing to undo; the batch never changed
    assert app_client.post("/api/undo", json={"client": "a"}).json()["undone"] is None
    again = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    assert [it["image_id"] for it in again] == ids and not any(it["picked"] for it in again)
    assert s.store.history() == []  # picks are not labels


def test_undo_after_a_submit_reopens_the_persons_own_answer(app_client):
    s = app_client.session
    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    ids = [it["image_id"] for it in items]
    wrong = {it["image_id"]: next(c for c in CLASSES if c != it["suggestion"]) for it in items}
    answers = [{"image_id": i, "label": wrong[i]} for i in ids]
    assert app_client.post("/api/answers", json={"client": "a", "answers": answers}
                           ).json()["refit"] is True
    wait_idle(app_client)
    nxt = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    nxt_ids = [it["image_id"] for it in nxt]
    app_client.post("/api/pick", json={"client": "a", "image_id": nxt_ids[0], "label": "red"})
    # a pick on screen: undo takes it back, not the submitted answer
    u = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert u["action"] == "pick" and u["image_id"] == nxt_ids[0]
    # no pick on screen: the last submitted answer, with the person's answer (not the model's)
    u = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert u["action"] == "answer" and u["image_id"] == ids[-1] and u["refit"] is True
    back = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    assert [it["image_id"] for it in back[:-1]] == nxt_ids  # not grown, reordered, hidden
    assert back[-1]["image_id"] == ids[-1] and back[-1]["reopened"]
    assert back[-1]["pick"] == wrong[ids[-1]]
    # (the batches picked ahead are pending too, held by no client)
    assert [p["image_id"] for p in s.store.pending() if p["client"] == "a"] == nxt_ids
    assert ids[-1] not in s.store.labelled()
    # the person changes it; the whole screen is submitted: a refit follows
    app_client.post("/api/pick", json={"client": "a", "image_id": ids[-1], "label": "blue"})
    answers = [{"image_id": it["image_id"], "label": "red"} for it in back[:-1]]
    answers.append({"image_id": ids[-1], "label": "blue"})
    r = app_client.post("/api/answers", json={"client": "a", "answers": answers}).json()
    assert r["refit"] is True and s.store.labelled()[ids[-1]] == "blue"
    assert not s.store.reopened() and not s.store.picks([ids[-1]])


def test_submit_only_the_answered_images_gives_the_rest_back(app_client):
    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    first = items[0]["image_id"]
    r = app_client.post("/api/answers", json={"client": "a", "release_rest": True, "answers": [
        {"image_id": first, "label": "red"}]}).json()
    assert r["saved"] == 1 and r["refit"] is True
    st = wait_idle(app_client)
    assert st["n_labelled"] == 1 and st["n_skipped"] == 0  # the others were not skipped
    r = app_client.post("/api/answers", json={"client": "a", "release_rest": "yes", "answers": [
        {"image_id": first, "label": "red"}]})
    assert r.status_code == 422 and "release_rest" in r.json()["detail"]


def test_a_pick_for_an_image_not_on_screen_is_refused(app_client):
    s = app_client.session
    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    shown = {it["image_id"] for it in items}
    other = next(i for i, _ in s.store.images() if i not in shown)
    r = app_client.post("/api/pick", json={"client": "a", "image_id": other, "label": "red"})
    assert r.status_code == 409 and "not in the pending batch" in r.json()["detail"]
    for body, code, words in (({"client": "a", "image_id": 10**6, "label": "red"}, 404,
                               "unknown image id"),
                              ({"client": "a", "image_id": items[0]["image_id"],
                                "label": "purple"}, 422, "not one of the classes"),
                              ({"client": "a", "image_id": "1", "label": "red"}, 422,
                               "must be an integer")):
        r = app_client.post("/api/pick", json=body)
        assert r.status_code == code and words in r.json()["detail"]
    assert s.store.picks(shown) == {}


def test_picks_sent_together_are_stored_in_order_in_one_transaction(app_client):
    s = app_client.session
    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    ids = [it["image_id"] for it in items]
    r = app_client.post("/api/pick", json={"client": "a", "picks": [
        {"image_id": ids[0], "label": "red"}, {"image_id": ids[1], "label": None},
        {"image_id": ids[0], "label": "blue"}]})
    assert r.status_code == 200 and r.json()["saved"] is True
    pick_ids = r.json()["pick_ids"]
    assert len(pick_ids) == 3 and pick_ids == sorted(pick_ids)
    assert {i: p["label"] for i, p in s.store.picks(ids).items()} == {ids[0]: "blue",
                                                                      ids[1]: None}
    # the order is kept: undo takes back the last one (blue), then red is in force again
    u = app_client.post("/api/undo", json={"client": "a"}).json()["undone"]
    assert u["action"] == "pick" and u["image_id"] == ids[0] and u["pick"] == "red"
    # one bad pick in a group writes none of them, and says which one
    shown = set(ids)
    other = next(i for i, _ in s.store.images() if i not in shown)
    before = s.store.picks(ids)
    for picks, code, words in (
            ([{"image_id": ids[2], "label": "red"}, {"image_id": other, "label": "red"}], 409,
             "not in the pending batch"),
            ([{"image_id": ids[2], "label": "red"}, {"image_id": ids[3], "label": "pink"}], 422,
             "picks[1]: label 'pink'"),
            ([{"image_id": ids[2], "label": "red"}, {"image_id": 10**6, "label": "red"}], 404,
             "picks[1]: unknown image id"),
            ([{"image_id": ids[2]}, "x"], 422, "picks[1]: must be an object"),
            ([], 422, "non-empty list")):
        r = app_client.post("/api/pick", json={"client": "a", "picks": picks})
        assert r.status_code == code and words in r.json()["detail"], (picks, r.json())
    assert s.store.picks(ids) == before
    r = app_client.post("/api/pick", json={"client": "a", "picks": [], "image_id": ids[0]})
    assert r.status_code == 422


def test_a_pick_that_arrives_after_a_later_pick_of_its_image_is_not_stored(app_client):
    # the page sends each pick in its own request, side by side, with its own count of
    # picks (seq): whatever order they arrive in, the latest pick of an image is in force
    s = app_client.session
    ids = [it["image_id"] for it in
           app_client.get("/api/batch", params={"client": "a"}).json()["items"]]

    def pick(image_id, label, seq, client="a"):
        r = app_client.post("/api/pick", json={"client": client, "image_id": image_id,
                                               "label": label, "seq": seq})
        assert r.status_code == 200 and r.json()["saved"] is True, r.json()
        return r.json()["pick_id"]

    def in_force():
        return {i: p["label"] for i, p in s.store.picks(ids).items()}

    assert isinstance(pick(ids[0], "blue", 2), int)
    assert pick(ids[0], "red", 1) is None  # older, arrived later: not stored
    assert pick(ids[0], "blue", 2) is None  # the same pick sent again (a lost reply)
    assert in_force() == {ids[0]: "blue"}
    assert pick(ids[1], "green", 5) is not None
    # an undo pressed before the pick of seq 5 (it arrives after it) leaves that pick alone
    u = app_client.post("/api/undo", json={"client": "a", "seq": 4}).json()["undone"]
    assert u["action"] == "pick" and u["image_id"] == ids[0] and u["pick"] is None
    assert in_force() == {ids[1]: "green"}
    assert pick(ids[0], "red", 1) is None  # an undone later pick still outranks it
    assert in_force() == {ids[1]: "green"}
    # another tab counts its own picks: its pick is stored in arrival order
    assert pick(ids[1], "red", 1, client="b") is not None
    assert in_force() == {ids[1]: "red"}
    # picks sent together, the older one last; and without seq, arrival order (as before)
    r = app_client.post("/api/pick", json={"client": "a", "picks": [
        {"image_id": ids[2], "label": "red", "seq": 7},
        {"image_id": ids[2], "label": "blue", "seq": 6}]}).json()
    assert r["pick_ids"][0] is not None and r["pick_ids"][1] is None
    assert pick(ids[3], "red", None) is not None and pick(ids[3], "blue", None) is not None
    assert in_force() == {ids[1]: "red", ids[2]: "red", ids[3]: "blue"}
    for bad in ("7", -1, True, 2**53, 1.5):
        r = app_client.post("/api/pick", json={"client": "a", "image_id": ids[0],
                                               "label": "red", "seq": bad})
        assert r.status_code == 422 and "seq must be an integer" in r.json()["detail"]
        r = app_client.post("/api/undo", json={"client": "a", "seq": bad})
        assert r.status_code == 422 and "seq must be an integer" in r.json()["detail"]
    assert in_force() == {ids[1]: "red", ids[2]: "red", ids[3]: "blue"}


class _BusyWorker:
    """A refit worker that is always refitting (a long refit behind the person)."""

    busy = True
    error = None

    def __init__(self):
        self.waited = []

    def wait_idle(self, timeout):
        self.waited.append(timeout)
        return False

    def request(self):
        pass

    def stop(self, timeout=None):
        pass


def test_a_long_refit_does_not_keep_the_person_waiting_for_a_batch(session_factory):
    s = session_factory(batch_size=4).prepare()
    worker = _BusyWorker()
    with TestClient(create_app(s, worker=worker, fresh_wait=0.25)) as client:
        first = client.get("/api/batch", params={"client": "a"}).json()
        ids = [it["image_id"] for it in first["items"]]
        # prepare() picked it ahead: given at once, without waiting for the refit
        assert len(ids) == 4 and first["busy"] and worker.waited == []
        again = client.get("/api/batch", params={"client": "a"}).json()
        assert [it["image_id"] for it in again["items"]] == ids  # it holds one: no wait
        assert worker.waited == []
        r = client.post("/api/answers", json={"client": "a", "answers": [
            {"image_id": i, "label": "red"} for i in ids]})
        assert r.json()["refit"] is True
        nxt = client.get("/api/batch", params={"client": "a"}).json()
        # the refit is still running: the current model gave the next batch at once
        assert worker.waited == [0.25]
        assert len(nxt["items"]) == 4 and not set(ids) & {it["image_id"] for it in nxt["items"]}
        assert {it["round"] for it in nxt["items"]} == {s.round}


def test_restart_keeps_the_batch_its_order_and_its_picks(session_factory):
    s = session_factory(batch_size=4)
    app = create_app(s)
    with TestClient(app) as client:
        first_server = wait_idle(client)["server_id"]
        ids = [it["image_id"] for it in
               client.get("/api/batch", params={"client": "a"}).json()["items"]]
        client.post("/api/pick", json={"client": "a", "image_id": ids[2], "label": "green"})
        # labels given outside the page (the API): the model is stale at the restart
        s.label(ids[0], "red")
    app.state.worker.stop(timeout=5)
    s2 = session_factory(batch_size=4)  # the restarted server (same project)
    assert s2.stale is False and not s2.ready
    app = create_app(s2)
    with TestClient(app) as client:
        st = wait_idle(client)
        assert st["round"] == 1  # the stale model was refitted on the new label...
        back = client.get("/api/batch", params={"client": "b"}).json()["items"]
        # ... and the pending batch is the same, in the same order, with its pick (topped
        # up to a full batch after the label given outside the page)
        assert [it["image_id"] for it in back[:3]] == ids[1:]
        assert [it["pick"] for it in back[:3]] == [None, "green", None]
        assert st["server_id"] != first_server  # how a page notices the restart
    app.state.worker.stop(timeout=5)


def test_restart_gives_a_tab_its_own_batch_not_one_a_closed_tab_held(session_factory):
    # found by hand: a tab closed earlier held the first batch; after kill -9 and a restart
    # the tab in use got that batch, without its picks, and its own batch went to nobody
    s = session_factory(batch_size=4)
    app = create_app(s)
    with TestClient(app) as client:
        wait_idle(client)
        old = [it["image_id"] for it in
               client.get("/api/batch", params={"client": "closed"}).json()["items"]]
        time.sleep(0.01)
        mine = [it["image_id"] for it in
                client.get("/api/batch", params={"client": "a"}).json()["items"]]
        assert len(mine) == 4 and not set(mine) & set(old)
        client.post("/api/pick", json={"client": "a", "image_id": mine[1], "label": "green"})
    app.state.worker.stop(timeout=5)
    app = create_app(session_factory(batch_size=4))  # the restarted server
    with TestClient(app) as client:
        wait_idle(client)
        back = client.get("/api/batch", params={"client": "a"}).json()["items"]
        assert [it["image_id"] for it in back] == mine
        assert [it["pick"] for it in back] == [None, "green", None, None]
        # the closed tab's batch is still there for the next tab
        other = client.get("/api/batch", params={"client": "new"}).json()["items"]
        assert [it["image_id"] for it in other] == old
    app.state.worker.stop(timeout=5)


def test_a_tab_that_leaves_gives_its_batch_first_to_the_next_tab(app_client):
    wait_idle(app_client)
    mine = [it["image_id"] for it in
            app_client.get("/api/batch", params={"client": "a"}).json()["items"]]
    app_client.post("/api/pick", json={"client": "a", "image_id": mine[0], "label": "red"})
    # another tab still holds a batch of its own: it keeps it
    other = [it["image_id"] for it in
             app_client.get("/api/batch", params={"client": "b"}).json()["items"]]
    assert not set(mine) & set(other)
    assert app_client.post("/api/leave", json={"client": "a"}).status_code == 200
    assert app_client.post("/api/leave", json={"client": ""}).status_code == 422
    nxt = app_client.get("/api/batch", params={"client": "c"}).json()["items"]
    assert [it["image_id"] for it in nxt] == mine and nxt[0]["pick"] == "red"
    again = app_client.get("/api/batch", params={"client": "b"}).json()["items"]
    assert [it["image_id"] for it in again] == other


def test_export_buttons_serve_every_format(app_client):
    import zipfile

    items = app_client.get("/api/batch", params={"client": "a"}).json()["items"]
    app_client.post("/api/answers", json={"client": "a", "answers": [
        {"image_id": it["image_id"], "label": "red"} for it in items]})
    wait_idle(app_client)
    r = app_client.get("/api/export/folders.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert sum(n.startswith("labels/red/") and n.endswith(".png") for n in names) == 4
    r = app_client.get("/api/export/label-studio.json")
    assert r.status_code == 200 and len(r.json()) == 45
    r = app_client.get("/api/export/adapter.safetensors")
    assert r.status_code == 200 and len(r.content) > 100
    assert app_client.get("/api/export/x.exe").status_code == 404
    page = app_client.get("/").text
    for href in ("api/export.csv", "api/export/folders.zip", "api/export/label-studio.json",
                 "api/export/adapter.safetensors"):
        assert f'href="{href}"' in page


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


def test_served_connections_send_small_replies_at_once(session_factory, monkeypatch):
    # the socket serve() listens on makes asyncio (uvicorn) turn Nagle's algorithm off on
    # each connection: a reply's body is not held back until its headers are ACKed (the
    # browser delays that ACK by up to 40 ms)
    import asyncio
    import socket

    import uvicorn

    from skpeal.labeling.app import serve

    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(sockets))
    serve(session_factory(), host="127.0.0.1", port=0, open_message=lambda line: None,
          ml_backend_port=0)
    assert len(ran) == 2  # the page's server and the ML backend's

    async def nodelay_of_an_accepted_connection(listening):
        accepted = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            accepted.set_result(writer.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    for (listening,) in ran:
        assert asyncio.run(nodelay_of_an_accepted_connection(listening)) == 1
        listening.close()


def test_an_unreadable_image_gets_a_message_not_a_crash(app_client):
    image_id, path = app_client.session.store.images()[0]
    with open(path, "wb") as f:
        f.write(b"not a png")
    r = app_client.get(f"/api/image/{image_id}")
    assert r.status_code == 422 and "cannot be read" in r.json()["detail"]
    assert app_client.get("/api/status").status_code == 200


def test_the_thumbnails_of_a_new_batch_are_made_before_the_page_asks(app_client):
    s = app_client.session
    pending = [p["image_id"] for p in s.store.pending()]
    assert pending
    want = [s.project / "thumbs" / f"{i}-384.png" for i in pending]
    t0 = time.time()
    while not all(p.exists() for p in want) and time.time() - t0 < 30:
        time.sleep(0.05)
    assert all(p.exists() for p in want)
    # the page's request is then answered from them
    r = app_client.get(f"/api/image/{pending[0]}", params={"size": 384})
    assert r.status_code == 200 and r.content == want[0].read_bytes()
