"""``skpeal label`` serves its page before the model is loaded: a restart its pending
batch, a new project a page that says the model is loading."""

import subprocess
import sys
import time

import pytest

from .conftest import free_port


@pytest.mark.parametrize("module", ["skpeal.labeling", "skpeal.labeling.store",
                                    "skpeal.labeling.app"])
def test_store_and_web_app_import_without_torch(module):
    code = (f"import sys, {module}; bad = [m for m in ('torch', 'open_clip', 'sklearn') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_names_of_skpeal_labeling():
    import skpeal.labeling as lab
    from skpeal.labeling.session import LabelingSession
    from skpeal.labeling.store import LabelStore

    assert lab.LabelingSession is LabelingSession
    assert lab.LabelStore is LabelStore
    assert set(lab.__all__) <= set(dir(lab))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lab.nope  # noqa: B018


# --------------------------------------------------------------------------- a restart
fastapi = pytest.importorskip("fastapi", reason="the web app needs the 'label' extra")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")


def _project_with_a_pending_batch(session_factory):
    """A prepared project whose batch (client "a") has one pick; returns (ids, picked)."""
    s = session_factory()
    s.prepare()
    batch = s.next_batch(client="a")
    s.pick(batch[1]["image_id"], "green", client="a")
    ids = [it["image_id"] for it in batch]
    project = s.project
    s.close()
    return project, ids, batch[1]["image_id"]


def test_restart_serves_the_pending_batch_and_keeps_picks_before_the_model(session_factory):
    import threading

    from fastapi.testclient import TestClient

    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import create_app

    project, ids, picked = _project_with_a_pending_batch(session_factory)
    go = threading.Event()

    def build():  # the model's import and load, held until the test lets it go
        assert go.wait(120)
        return session_factory(images=None, classes=None)

    starting = StartingSession(project, build)
    assert starting.ready and starting.session is None
    app = create_app(starting)
    try:
        with TestClient(app) as client:
            st = client.get("/api/status").json()
            assert st["ready"] and st["busy"] and st["state"]["phase"] == "loading"
            assert st["classes"] == starting.classes and st["rounds"][0]["round"] == 0
            data = client.get("/api/batch", params={"client": "b"}).json()
            assert data["ready"] and data["round"] == 0
            assert [it["image_id"] for it in data["items"]] == ids  # same batch, same order
            assert [it["pick"] for it in data["items"]] == [
                "green" if i == picked else None for i in ids]
            assert all(it["suggestion"] in starting.classes for it in data["items"])
            # a pick while the model loads: committed to the store, kept
            r = client.post("/api/pick", json={"client": "b", "image_id": ids[0],
                                               "label": "red"})
            assert r.status_code == 200 and r.json()["saved"]
            r = client.post("/api/pick", json={"client": "b", "image_id": 10 ** 6,
                                               "label": "red"})
            assert r.status_code == 404
            # the tab closes and a new one opens: it gets that batch, with its picks
            assert client.post("/api/leave", json={"client": "b"}).status_code == 200
            data = client.get("/api/batch", params={"client": "c"}).json()
            assert [it["image_id"] for it in data["items"]] == ids
            client.post("/api/leave", json={"client": "c"})
            assert starting.session is None  # all of it before the model was built
            go.set()
            assert starting.wait(120) and starting.session is not None
            app.state.worker.wait_idle(120)
            assert starting.session.ready
            data = client.get("/api/batch", params={"client": "b"}).json()
            assert [it["image_id"] for it in data["items"]] == ids
            picks = {it["image_id"]: it["pick"] for it in data["items"]}
            assert picks[ids[0]] == "red" and picks[picked] == "green"
            # answers go to the session now: the picks become labels
            r = client.post("/api/answers", json={"client": "b", "answers": [
                {"image_id": ids[0], "label": "red"}, {"image_id": picked, "label": "green"}]})
            assert r.status_code == 200 and r.json()["saved"] == 2
            assert starting.session.store.labelled() == {ids[0]: "red", picked: "green"}
    finally:
        go.set()
        app.state.worker.stop(timeout=30)
        starting.close()


def test_answers_wait_for_the_model_and_a_failed_build_is_reported(session_factory):
    from fastapi.testclient import TestClient

    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import create_app

    project, ids, picked = _project_with_a_pending_batch(session_factory)

    def build():
        raise ValueError("another backbone than the project's")

    starting = StartingSession(project, build)
    app = create_app(starting)
    try:
        with TestClient(app) as client:
            assert starting.wait(60)
            app.state.worker.wait_idle(60)
            st = client.get("/api/status").json()
            assert not st["ready"] and "another backbone" in st["error"]
            r = client.post("/api/answers", json={"client": "b", "answers": [
                {"image_id": picked, "label": "green"}]})
            assert r.status_code == 409 and "another backbone" in r.json()["detail"]
            r = client.post("/api/undo", json={"client": "b"})
            assert r.status_code == 409
    finally:
        app.state.worker.stop(timeout=30)
        starting.close()
    # nothing given was lost: the pick is still in the store
    from skpeal.labeling.store import LabelStore

    store = LabelStore(project)
    assert store.picks([picked])[picked]["label"] == "green"
    store.close()


def test_starting_session_refuses_a_folder_that_is_no_project(tmp_path):
    from skpeal.labeling._starting import StartingSession

    with pytest.raises(ValueError, match="not a labelling project"):
        StartingSession(tmp_path, lambda: None)


def test_the_restarted_server_serves_its_batch_without_torch(session_factory, tmp_path):
    """The command line's start-up path (parser, store, web app, /api/batch) needs no torch."""
    project, ids, picked = _project_with_a_pending_batch(session_factory)
    code = f"""
import sys, threading, json
from skpeal.cli import _parser
from skpeal.labeling._starting import StartingSession
from skpeal.labeling.app import create_app
from fastapi.testclient import TestClient
_parser(label_only=True).parse_args(["label", "x", "--project", {str(project)!r}])
hold = threading.Event()
s = StartingSession({str(project)!r}, lambda: hold.wait())
app = create_app(s)
with TestClient(app) as c:
    items = c.get("/api/batch", params={{"client": "z"}}).json()["items"]
    bad = [m for m in ("torch", "open_clip") if m in sys.modules]
    hold.set()
print(json.dumps({{"ids": [it["image_id"] for it in items], "bad": bad}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"ids": ids, "bad": []}


def _start_label(project, folder, *extra):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.fspath(root), "HF_HUB_OFFLINE": "1"}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "skpeal.cli", "label", os.fspath(folder), "--project",
         os.fspath(project), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc):
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out = proc.stdout.read()
    proc.stdout.close()
    return out


def test_skpeal_label_restart_shows_the_same_batch_and_keeps_a_pick(session_factory,
                                                                   image_folder):
    import json
    import time
    import urllib.request

    from skpeal.labeling.store import LabelStore

    project, ids, picked = _project_with_a_pending_batch(session_factory)
    proc, base = _start_label(project, image_folder[0])
    try:
        t0, items = time.time(), []
        while not items and time.time() - t0 < 120:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(base + "/api/batch?client=t", timeout=10) as r:
                    items = json.loads(r.read())["items"]
            except OSError:
                time.sleep(0.1)
        assert [it["image_id"] for it in items] == ids
        assert {it["image_id"]: it["pick"] for it in items}[picked] == "green"
        req = urllib.request.Request(
            base + "/api/pick", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"client": "t", "image_id": ids[0], "label": "blue"}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["saved"]
        while time.time() - t0 < 180:  # the model loads behind; the batch stays the same
            with urllib.request.urlopen(base + "/api/status", timeout=10) as r:
                st = json.loads(r.read())
            if st["state"]["phase"] != "loading" and not st["busy"]:
                break
            time.sleep(0.3)
        assert st["ready"] and st["round"] == 0 and not st["error"]
        with urllib.request.urlopen(base + "/api/batch?client=t", timeout=30) as r:
            items = json.loads(r.read())["items"]
        assert [it["image_id"] for it in items] == ids
        assert {it["image_id"]: it["pick"] for it in items}[ids[0]] == "blue"
    finally:
        _stop(proc)
    store = LabelStore(project)
    assert store.picks([ids[0]])[ids[0]]["label"] == "blue"
    store.close()


def test_skpeal_label_restart_with_another_backbone_stops_with_the_error(session_factory,
                                                                         image_folder):
    project, ids, picked = _project_with_a_pending_batch(session_factory)
    proc, _ = _start_label(project, image_folder[0], "--model", "effnet-lite0-minilm")
    try:
        proc.wait(timeout=180)
    finally:
        out = _stop(proc)
    assert proc.returncode == 2, out
    assert "skpeal: error:" in out and "skpeal-tiny" in out, out


# --------------------------------------------------------------------------- a new project
def test_a_new_project_serves_the_page_while_its_session_is_built(tmp_path, image_folder,
                                                                  session_factory):
    import threading

    from fastapi.testclient import TestClient

    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import create_app

    from .conftest import CLASSES

    with pytest.raises(ValueError, match="needs its class names"):
        StartingSession.new_project(tmp_path / "p", None, images=image_folder[0], classes=None)
    with pytest.raises(ValueError, match="listed twice"):
        StartingSession.new_project(tmp_path / "p", None, images=image_folder[0],
                                    classes=["a", "a"])
    with pytest.raises(ValueError, match="is not a folder"):
        StartingSession.new_project(tmp_path / "p", None, images=tmp_path / "nope",
                                    classes=CLASSES)
    go = threading.Event()

    def build():  # the imports, the folder listed, the project made: held by the test
        assert go.wait(120)
        return session_factory()

    project = tmp_path / "project"  # session_factory's
    starting = StartingSession.new_project(project, build, images=image_folder[0],
                                           classes=CLASSES)
    assert not starting.ready and starting.store is None
    app = create_app(starting, model_wait=0.1)
    try:
        with TestClient(app) as client:
            st = client.get("/api/status").json()
            assert not st["ready"] and st["busy"] and st["state"]["phase"] == "loading"
            assert st["classes"] == CLASSES
            assert client.get("/api/batch", params={"client": "b"}).json() == {
                "ready": False, "busy": True, "items": []}
            r = client.post("/api/pick", json={"client": "b", "image_id": 1, "label": "red"})
            assert r.status_code == 404
            r = client.post("/api/undo", json={"client": "b"})
            assert r.status_code == 503 and r.headers["X-Skpeal-Loading"] == "1"
            assert client.post("/api/leave", json={"client": "b"}).status_code == 200
            assert not project.exists()  # nothing made before the session
            go.set()
            t0, items = time.time(), []
            while not items and time.time() - t0 < 120:
                items = client.get("/api/batch", params={"client": "b"}).json()["items"]
                time.sleep(0.05)
            app.state.worker.wait_idle(120)
            assert starting.session.ready and starting.store is starting.session.store
    finally:
        go.set()
        app.state.worker.stop(timeout=30)
        starting.close()
    # the same first batch as the session opened directly (same seed)
    import shutil

    shutil.rmtree(project)
    direct = session_factory()
    direct.prepare()
    assert [it["image_id"] for it in items] == [
        it["image_id"] for it in direct.next_batch(client="b")]


def test_skpeal_label_new_project_answers_before_its_session_is_built(image_folder, tmp_path):
    """The command line's new project: the page answers while the session is held back."""
    import json
    import os
    import urllib.request
    from pathlib import Path

    gate, project = tmp_path / "gate", tmp_path / "project"
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    code = f"""
import os, sys, time
import skpeal.cli as cli
build = cli._label_session
def held(*args):
    while not os.path.exists({str(gate)!r}):
        time.sleep(0.05)
    return build(*args)
cli._label_session = held
sys.exit(cli.main(["label", {str(image_folder[0])!r}, "--classes", "red", "green", "blue",
                   "--project", {str(project)!r}, "--port", "{port}",
                   "--model", "skpeal-tiny", "--pretrained", "none", "--init", "zero-shot"]))
"""
    env = {**os.environ, "PYTHONPATH": os.fspath(root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"

    def get(path):
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return json.loads(r.read())

    try:
        t0, st = time.time(), None
        while st is None and time.time() - t0 < 120:
            assert proc.poll() is None, proc.stdout.read()
            try:
                st = get("/api/status")
            except OSError:
                time.sleep(0.05)
        assert not st["ready"] and st["state"]["phase"] == "loading"
        assert not get("/api/batch?client=t")["items"] and not project.exists()
        gate.touch()
        items = []
        while not items and time.time() - t0 < 240:
            assert proc.poll() is None, proc.stdout.read()
            items = get("/api/batch?client=t")["items"]
            time.sleep(0.1)
        assert len(items) == 10 and (project / "labels.sqlite").exists()
    finally:
        out = _stop(proc)
    assert "new project" in out, out


# ------------------------------------------------- undo and answers while the model loads
def test_undo_of_a_pick_works_while_loading_and_answers_get_503_then_pass(session_factory):
    import threading

    from fastapi.testclient import TestClient

    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import LOADING_MESSAGE, create_app

    project, ids, picked = _project_with_a_pending_batch(session_factory)
    go = threading.Event()

    def build():
        assert go.wait(120)
        return session_factory(images=None, classes=None)

    starting = StartingSession(project, build)
    app = create_app(starting, model_wait=0.2)
    try:
        with TestClient(app) as client:
            assert client.get("/api/batch", params={"client": "b"}).json()["items"]
            client.post("/api/pick", json={"client": "b", "image_id": ids[0], "label": "red"})
            client.post("/api/pick", json={"client": "b", "image_id": ids[0],
                                           "label": "blue"})
            # the undo of a pick: the store alone, at once, the earlier pick in force again
            r = client.post("/api/undo", json={"client": "b"})
            assert r.status_code == 200, r.text
            assert r.json()["undone"] == {"action": "pick", "image_id": ids[0],
                                          "label": "blue", "kind": "label", "pick": "red",
                                          "refit": False}
            assert client.post("/api/undo", json={"client": "b"}).json()["undone"]["pick"] \
                is None
            r = client.post("/api/undo", json={"client": "b"})  # the pick of before the restart
            assert r.json()["undone"]["image_id"] == picked
            items = client.get("/api/batch", params={"client": "b"}).json()["items"]
            assert [it["pick"] for it in items] == [None] * len(ids)
            # no pick left on screen: the undo of an answer needs the model -> 503, retry
            r = client.post("/api/undo", json={"client": "b"})
            assert r.status_code == 503 and r.headers["x-skpeal-loading"] == "1"
            assert r.json()["detail"] == LOADING_MESSAGE and "retry-after" in r.headers
            r = client.post("/api/answers", json={"client": "b", "answers": [
                {"image_id": ids[0], "label": "red"}]})
            assert r.status_code == 503 and r.headers["x-skpeal-loading"] == "1"
            assert starting.session is None
            assert starting.store.labelled() == {}  # a 503 changed nothing
            go.set()
            assert starting.wait(120)
            r = client.post("/api/answers", json={"client": "b", "answers": [
                {"image_id": ids[0], "label": "red"}]})
            assert r.status_code == 200 and r.json()["saved"] == 1
            r = client.post("/api/undo", json={"client": "b"})
            assert r.status_code == 200 and r.json()["undone"]["action"] == "answer"
    finally:
        go.set()
        app.state.worker.stop(timeout=30)
        starting.close()


def test_a_restart_while_encoding_hands_over_at_the_first_encoded_images(session_factory,
                                                                         monkeypatch):
    """The session serves (answers, new batches) as soon as it is ready, while the rest of
    the pool is still being encoded behind: not once every image is encoded."""
    import threading
    import time

    from fastapi.testclient import TestClient

    from skpeal import CLIPAdapterClassifier
    from skpeal.labeling import session as session_module
    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import create_app

    monkeypatch.setattr(session_module, "FIRST_ENCODED", 10)
    monkeypatch.setattr(session_module, "ENCODE_CHUNK", 8)
    mode, gate = {"now": "kill"}, threading.Event()

    def gated(original):
        def encode(self, X):  # the first sample (10 images) passes; the chunks after it not
            if len(X) == 8 and mode["now"] == "kill":
                raise KeyboardInterrupt("killed while encoding")  # as kill -9 mid-encoding
            if len(X) == 8 and mode["now"] == "hold":
                assert gate.wait(120)
            return original(self, X)
        return encode

    for method in ("predict_proba", "predict_proba_embed"):  # probabilities (and features)
        monkeypatch.setattr(CLIPAdapterClassifier, method,
                            gated(getattr(CLIPAdapterClassifier, method)))
    s = session_factory()
    with pytest.raises(KeyboardInterrupt):
        s.prepare()
    assert s.store.rounds() == [] and len(s.store.pending()) == 5  # the first batch, stored
    ids = [p["image_id"] for p in s.store.pending()]
    s.close()

    mode["now"] = "hold"  # the restart encodes the rest of the pool until the gate opens
    starting = StartingSession(project := s.project, lambda: session_factory(
        images=None, classes=None))
    assert starting.ready and project.exists()
    app = create_app(starting, model_wait=0.2)
    try:
        with TestClient(app) as client:
            t0 = time.time()
            while (starting.session is None or not starting.session.ready) \
                    and time.time() - t0 < 120:
                time.sleep(0.05)
            assert starting.session.streaming and not gate.is_set()  # still encoding
            assert starting.wait(0) and not starting.loading  # ... and it serves already
            st = client.get("/api/status").json()
            assert st["ready"] and st["state"]["phase"] == "encoding"
            items = client.get("/api/batch", params={"client": "b"}).json()["items"]
            assert [it["image_id"] for it in items] == ids  # the same batch
            r = client.post("/api/answers", json={"client": "b", "answers": [
                {"image_id": i, "label": "red"} for i in ids]})
            assert r.status_code == 200 and r.json()["saved"] == 5
            assert starting.session.streaming  # answered before the pool was encoded
            assert len(starting.session.store.labelled()) == 5
            gate.set()
            assert app.state.worker.wait_idle(120)
            assert not starting.session.streaming and len(starting.store.rounds()) >= 1
    finally:
        gate.set()
        app.state.worker.stop(timeout=30)
        starting.close()


def test_skpeal_label_restart_with_the_ml_backend_serves_from_the_store(session_factory,
                                                                        image_folder):
    """``--ml-backend-port`` on a restart: /health answers while the model loads, /predict
    answers 503 "still loading" until the model is there, then the suggestions."""
    import json
    import time
    import urllib.error
    import urllib.request

    from .conftest import CLASSES

    project, ids, picked = _project_with_a_pending_batch(session_factory)
    ml_port = free_port()
    proc, base = _start_label(project, image_folder[0], "--ml-backend-port", str(ml_port))
    ml = f"http://127.0.0.1:{ml_port}"
    choices = "".join(f'<Choice value="{c}"/>' for c in CLASSES)
    body = json.dumps({"tasks": [{"id": 1, "data": {"image": "x", "skpeal_id": ids[0]}}],
                       "label_config": '<View><Image name="image" value="$image"/><Choices '
                       f'name="choice" toName="image">{choices}</Choices></View>'}).encode()

    def predict():
        req = urllib.request.Request(ml + "/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        t0, health = time.time(), None
        while health is None and time.time() - t0 < 120:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(ml + "/health", timeout=10) as r:
                    health = json.loads(r.read())
            except OSError:
                time.sleep(0.1)
        assert health["status"] == "UP" and health["model_version"] == "round-0"
        seen = []
        while time.time() - t0 < 180:
            code, answer = predict()
            seen.append(code)
            if code == 200:
                break
            assert code == 503 and "still loading" in answer["detail"], answer
            time.sleep(0.3)
        assert seen[-1] == 200, seen
        assert answer["results"][0]["result"][0]["value"]["choices"][0] in CLASSES
        with urllib.request.urlopen(base + "/api/batch?client=t", timeout=30) as r:
            assert [it["image_id"] for it in json.loads(r.read())["items"]] == ids
    finally:
        _stop(proc)
