"""End to end against a running Label Studio: import, ML backend, webhook, export.

Slow (Label Studio starts in about a minute on 2 cores, migrations included). It pins many
packages, so it lives in a venv of its own: CI installs it
in ``.lsvenv`` (``scripts/test.sh`` runs ``scripts/setup_labelstudio.sh`` in the
background; this module waits for it), where this test finds it; it is skipped only when
that install failed (``.lsvenv.log`` says why). By hand::

    python3 -m venv /tmp/lsvenv && /tmp/lsvenv/bin/pip install \
        -c constraints/labelstudio.txt label-studio label-studio-sdk
    SKPEAL_LABEL_STUDIO=/tmp/lsvenv/bin/label-studio \
        pytest tests/labeling/test_labelstudio_e2e.py

What it checks, with Label Studio's own server and API: skpeal's exported tasks import
(with their predictions and annotations); Label Studio connects to skpeal's ML backend
(``/health``, ``/setup``), asks it for predictions (``/predict``) and stores them with the
backend's model version; an annotation made in Label Studio reaches the backend through
``/webhook``; Label Studio's JSON export, read back by :func:`import_labels`, gives the
labels exported plus the new one. With a labelling session, following the docs' settings:
the images are served from the local-files storage that :func:`local_files_settings`
names, the backend behind basic auth gives Label Studio's webhook its header, annotations
reach the session and their deletion takes the label back.
"""

import os
import shutil
import subprocess
import threading
import time

import pytest

from skpeal.labeling.labelstudio import (
    export_tasks,
    import_labels,
    labeling_config,
    local_files_settings,
    ml_backend_app,
)

from .conftest import CLASSES as SESSION_CLASSES
from .conftest import free_port, make_images, tiny_estimator

pytestmark = pytest.mark.slow

_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
_REPO_LS = os.path.join(_ROOT, ".lsvenv", "bin", "label-studio")  # scripts/setup_labelstudio.sh


def _wait_for_install(timeout=1200):
    """Wait for the install scripts/test.sh started in the background, if it still runs."""
    try:
        with open(os.path.join(_ROOT, ".lsvenv.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)  # still installing
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(2)


def _label_studio():
    if os.environ.get("SKPEAL_LABEL_STUDIO"):
        return os.environ["SKPEAL_LABEL_STUDIO"]
    _wait_for_install()
    pins = os.path.join(_ROOT, ".lsvenv", ".skpeal-pins")
    if os.path.exists(_REPO_LS) and os.path.exists(pins):
        return _REPO_LS
    return shutil.which("label-studio")


LS = _label_studio()
if not LS or not os.path.exists(LS):
    pytest.skip("Label Studio is not installed (scripts/setup_labelstudio.sh installs it in "
                ".lsvenv, see .lsvenv.log; or set SKPEAL_LABEL_STUDIO to its label-studio "
                "executable)", allow_module_level=True)
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

CLASSES = ["T-shirt/top", "Trouser", "Bag"]
TOKEN = "0123456789abcdef0123456789abcdef01234567"


class Recorder:
    classes = CLASSES
    model_version = "skpeal-e2e-1"

    def __init__(self):
        self.predicted, self.annotations, self.requests = [], [], []

    def predict(self, images):
        self.predicted.extend(images)
        return [("Bag", 0.4) for _ in images]

    def add_annotation(self, image, label, annotation):
        self.annotations.append((image.image_id, label, annotation.get("id")))


@pytest.fixture(scope="module")
def backend():
    rec = Recorder()
    port = free_port()
    app = ml_backend_app(rec)

    @app.middleware("http")
    async def record(request, call_next):  # what Label Studio really sends
        body = await request.body()
        rec.requests.append((request.method, request.url.path, body))
        return await call_next(request)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield rec, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Label Studio's local-files document root, the session's images in photos/ inside."""
    root = tmp_path_factory.mktemp("ls-files")
    make_images(root / "photos", n=12)
    return root


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory, files):
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ,
               # as docs/user_guide/label_studio_and_stopping.rst says, word for word
               LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(files),
               LABEL_STUDIO_HOST=url,
               LABEL_STUDIO_BASE_DATA_DIR=str(data),
               LABEL_STUDIO_USERNAME="e2e@example.com",
               LABEL_STUDIO_PASSWORD="skpeal-e2e-password",
               LABEL_STUDIO_USER_TOKEN=TOKEN,
               LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
               # the ML backend runs on 127.0.0.1, which Label Studio refuses by default
               SSRF_PROTECTION_ENABLED="false",
               ML_BLOCK_LOCAL_IP="false",
               LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true")
    env.pop("PYTHONPATH", None)
    log = open(data / "label-studio.log", "w")
    proc = subprocess.Popen([LS, "start", "--no-browser", "--host", "127.0.0.1", "--port",
                             str(port), "--internal-host", "127.0.0.1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 900  # first start: migrations (minutes on a busy machine)
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("Label Studio did not start:\n"
                            + (data / "label-studio.log").read_text()[-3000:])
            time.sleep(1)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Token {TOKEN}"},
                              timeout=120)
        yield client
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _ok(r):
    assert r.status_code < 300, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def test_round_trip_through_label_studio(label_studio, backend):
    rec, backend_url = backend
    ls = label_studio
    project = _ok(ls.post("/api/projects", json={"title": "skpeal e2e",
                                                 "label_config": labeling_config(CLASSES)}))
    pid = project["id"]

    ids = [f"img-{i}" for i in range(6)]
    labels = ["Bag", None, "Trouser", None, "T-shirt/top", None]
    tasks = export_tasks([f"/data/local-files/?d=img/{i}.png" for i in range(6)], ids=ids,
                         predictions=["Bag", "Bag", "Trouser", "Bag", "Bag", "Trouser"],
                         scores=[0.9, 0.3, 0.8, 0.2, 0.6, 0.5], model_version="skpeal-export",
                         labels=labels, classes=CLASSES)
    _ok(ls.post(f"/api/projects/{pid}/import", json=tasks))

    # Settings -> Model -> Connect Model: Label Studio calls /health and /setup
    ml = _ok(ls.post("/api/ml", json={"url": backend_url, "project": pid,
                                      "title": "skpeal"}))
    ml = _ok(ls.get(f"/api/ml/{ml['id']}"))
    assert ml["state"] == "CO", ml  # connected
    assert ml["model_version"] == "skpeal-e2e-1"

    # Data Manager -> Retrieve Predictions: Label Studio calls /predict
    _ok(ls.post(f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                json={"selectedItems": {"all": True, "excluded": []}}))
    assert {im.image_id for im in rec.predicted} >= set(ids)

    # an annotator labels task img-1 in Label Studio: the webhook brings it to skpeal
    ls_tasks = _ok(ls.get("/api/tasks", params={"project": pid, "page_size": 100}))["tasks"]
    by_id = {t["data"]["skpeal_id"]: t["id"] for t in ls_tasks}
    _ok(ls.post(f"/api/tasks/{by_id['img-1']}/annotations", json={
        "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                    "value": {"choices": ["Trouser"]}}], "was_cancelled": False}))
    for _ in range(50):
        if rec.annotations:
            break
        time.sleep(0.1)
    assert [(i, lab) for i, lab, _ in rec.annotations] == [("img-1", "Trouser")]

    # Export -> JSON, read back
    export = _ok(ls.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"}))
    got = {x.key: x.label for x in import_labels(export, classes=CLASSES)}
    expected = {i: lab for i, lab in zip(ids, labels) if lab is not None}
    expected["img-1"] = "Trouser"
    assert got == expected
    # the predictions Label Studio holds: the exported ones and the backend's
    preds = _ok(ls.get("/api/predictions", params={"project": pid}))
    by_version = {}
    for p in preds:
        by_version.setdefault(p["model_version"], []).append(p)
    assert len(by_version["skpeal-export"]) == 6 and len(by_version["skpeal-e2e-1"]) == 6
    assert sorted(p["score"] for p in by_version["skpeal-export"]) == [0.2, 0.3, 0.5, 0.6,
                                                                       0.8, 0.9]
    for p in by_version["skpeal-e2e-1"]:
        assert p["score"] == pytest.approx(0.4)
        assert p["result"][0]["value"] == {"choices": ["Bag"]}
    paths = [(m, path) for m, path, _ in rec.requests]
    assert ("GET", "/health") in paths and ("POST", "/setup") in paths
    assert ("POST", "/predict") in paths and ("POST", "/webhook") in paths
    capture = os.environ.get("SKPEAL_LS_CAPTURE")
    if capture:  # keep the real requests (used to write tests/labeling/data/)
        import json

        with open(capture, "w") as f:
            json.dump({"requests": [(m, p, b.decode()) for m, p, b in rec.requests],
                       "export": export, "predictions": preds}, f, indent=1)


def _wait(check, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_session_through_label_studio_as_the_docs_say(label_studio, files, tmp_path):
    """The docs' steps with a labelling session: local files, basic auth, deletions."""
    from skpeal.labeling import LabelingSession
    from skpeal.labeling.app import ml_backend_for_session

    ls = label_studio
    session = LabelingSession(tmp_path / "project", files / "photos", SESSION_CLASSES,
                              estimator=tiny_estimator(), batch_size=4).prepare()
    settings = local_files_settings(session)
    assert settings == {"document_root": str(files), "storage_path": str(files / "photos")}
    pid = _ok(ls.post("/api/projects", json={
        "title": "skpeal session", "label_config": labeling_config(session.classes)}))["id"]
    # Settings -> Cloud Storage -> Add Source Storage -> Local files, the storage path
    _ok(ls.post("/api/storages/localfiles", json={
        "project": pid, "title": "photos", "path": settings["storage_path"],
        "use_blob_urls": False}))
    tasks = session.export_label_studio(tmp_path / "tasks.json")
    _ok(ls.post(f"/api/projects/{pid}/import", json=tasks))
    image = ls.get(tasks[0]["data"]["image"])  # Label Studio serves the image
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"

    # the backend behind basic auth (as beyond the loopback), served by uvicorn
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        ml_backend_for_session(session, token="e2e-secret"), host="127.0.0.1", port=port,
        log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started, "the backend to start")
        ml = _ok(ls.post("/api/ml", json={
            "url": f"http://127.0.0.1:{port}", "project": pid, "title": "skpeal",
            "auth_method": "BASIC_AUTH", "basic_auth_user": "skpeal",
            "basic_auth_pass": "e2e-secret"}))
        assert _ok(ls.get(f"/api/ml/{ml['id']}"))["state"] == "CO"
        # skpeal gave Label Studio's webhook the basic-auth header itself
        _wait(lambda: [h for h in _ok(ls.get("/api/webhooks/", params={"project": pid}))
                       if h["url"].endswith("/webhook")
                       and h["headers"].get("Authorization", "").startswith("Basic ")],
              "the webhook's Authorization header")
        _ok(ls.post(f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                    json={"selectedItems": {"all": True, "excluded": []}}))
        preds = _ok(ls.get("/api/predictions", params={"project": pid}))
        assert sum(p["model_version"] == session.model_version for p in preds) >= len(tasks)

        ls_tasks = _ok(ls.get("/api/tasks", params={"project": pid, "page_size": 100}))
        task = ls_tasks["tasks"][0]
        image_id = task["data"]["skpeal_id"]
        ann = _ok(ls.post(f"/api/tasks/{task['id']}/annotations", json={
            "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                        "value": {"choices": ["blue"]}}], "was_cancelled": False}))
        _wait(lambda: session.store.labelled().get(image_id) == "blue",
              "the annotation to reach the session through the webhook")
        assert session.store.history()[-1]["client"] == "label-studio"
        # deleting it in Label Studio takes the label back (the history keeps both)
        r = ls.delete(f"/api/annotations/{ann['id']}/")
        assert r.status_code < 300, r.text
        _wait(lambda: image_id not in session.store.labelled(), "the deletion to arrive")
        assert session.store.history()[-1]["kind"] == "undo"
    finally:
        server.should_exit = True
        thread.join(10)
        session.close()
