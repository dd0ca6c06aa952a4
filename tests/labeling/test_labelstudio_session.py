"""A labelling session through Label Studio: tasks out and labels back, the ML backend
over a session (with the request shapes Label Studio 1.23.2 sent, recorded in
data/label_studio_1.23.2.json), and the stopping suggestion of the session's rounds."""

import copy
import io
import json
import os
import time
from base64 import b64encode
from pathlib import Path

import numpy as np
import pytest

from skpeal.labeling import LabelingSession
from skpeal.labeling.labelstudio import SessionBackend, local_files_settings, ml_backend_app
from skpeal.stopping import EstimatedAccuracy, KappaAverage

from .conftest import CLASSES, tiny_estimator

RECORDED = json.loads((Path(__file__).parent / "data" / "label_studio_1.23.2.json").read_text())
LS_CLASSES = ["T-shirt/top", "Trouser", "Bag"]  # the recorded project's classes


def _label_some(session, truth, n=5):
    batch = session.next_batch()
    for item in batch[:n]:
        session.label(item["image_id"], truth[item["path"]])
    session.skip(batch[n]["image_id"])
    return batch


def test_export_tasks_carry_predictions_and_labels(session_factory, image_folder, tmp_path):
    folder, truth = image_folder
    s = session_factory(batch_size=6).prepare()
    _label_some(s, truth)
    path = tmp_path / "tasks.json"
    tasks = s.export_label_studio(path)
    assert json.loads(path.read_text()) == tasks
    assert len(tasks) == len(truth)
    by_id = {p["image_id"]: p for p in s.predictions()}
    labelled = s.store.labelled()
    root = os.path.dirname(os.path.realpath(folder))  # Label Studio needs the storage
    # (the images' folder) strictly inside its document root: the root is its parent
    assert local_files_settings(s) == {"document_root": root,
                                       "storage_path": os.path.realpath(folder)}
    for t in tasks:
        image_id = t["data"]["skpeal_id"]
        path_rel = os.path.relpath(by_id[image_id]["path"], root)
        assert path_rel.startswith(os.path.basename(folder) + "/")
        assert t["data"]["image"] == "/data/local-files/?d=" + path_rel
        (pred,) = t["predictions"]
        assert pred["model_version"] == s.model_version == "round-0"
        assert pred["score"] == pytest.approx(by_id[image_id]["probability"])
        assert pred["result"][0]["value"] == {"choices": [by_id[image_id]["suggestion"]]}
        if image_id in labelled:
            assert t["annotations"][0]["result"][0]["value"] == {
                "choices": [labelled[image_id]]}
        else:
            assert "annotations" not in t
    # other ways to give Label Studio the images; a file object
    buf = io.StringIO()
    tasks2 = s.export_label_studio(buf, image_url="https://files.example.org/imgs/")
    assert json.loads(buf.getvalue()) == tasks2
    assert tasks2[0]["data"]["image"].startswith("https://files.example.org/imgs/part")
    tasks3 = s.export_label_studio(image_url=lambda p: "s3://bucket/" + os.path.basename(p))
    assert tasks3[0]["data"]["image"].startswith("s3://bucket/img")
    with pytest.raises(ValueError, match="image_url"):
        s.export_label_studio(image_url=3)


def test_session_labels_round_trip_through_label_studio(session_factory, image_folder, tmp_path):
    """Tasks exported from one session and imported into a fresh project: same labels."""
    folder, truth = image_folder
    s = session_factory(batch_size=6).prepare()
    _label_some(s, truth)
    labelled = s.store.labelled()
    assert len(labelled) == 5
    path = tmp_path / "tasks.json"
    s.export_label_studio(path)
    # Label Studio's export keeps the tasks' data and annotations (and adds its own fields)
    exported = json.loads(path.read_text())
    for k, t in enumerate(exported):
        t["id"] = k + 1
        for a in t.get("annotations", []):
            a.update(id=k + 100, completed_by=1, updated_at="2026-12-02T01:10:18.627292Z")

    other = LabelingSession(tmp_path / "project2", folder, CLASSES, estimator=tiny_estimator())
    try:
        assert other.import_label_studio(exported) == {"added": 5, "unchanged": 0}
        paths = dict(other.store.images())
        mine = dict(s.store.images())
        assert {paths[i]: lab for i, lab in other.store.labelled().items()} == \
            {mine[i]: lab for i, lab in labelled.items()}
        rows = other.store.history()
        assert len(rows) == 5
        assert {(r["annotator"], r["client"]) for r in rows} == {("label-studio", "label-studio")}
        # importing again adds nothing; a changed label is a new row, the old one is kept
        assert other.import_label_studio(exported) == {"added": 0, "unchanged": 5}
        task = next(t for t in exported if "annotations" in t)
        old = task["annotations"][0]["result"][0]["value"]["choices"][0]
        new = next(c for c in CLASSES if c != old)
        task["annotations"].append({"id": 999, "completed_by": 2, "was_cancelled": False,
                                    "updated_at": "2026-12-02T02:00:00Z",
                                    "result": [{"from_name": "choice", "to_name": "image",
                                                "type": "choices",
                                                "value": {"choices": [new]}}]})
        assert other.import_label_studio(exported) == {"added": 1, "unchanged": 4}
        assert len(other.store.history()) == 6
        assert other.store.labelled()[task["data"]["skpeal_id"]] == new
    finally:
        other.close()


def test_import_checks_everything_before_writing(session_factory, image_folder):
    s = session_factory()
    ids = [i for i, _ in s.store.images()]
    good = {"data": {"image": "x", "skpeal_id": ids[0]},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["red"]}}]}]}
    unknown = {"id": 7, "data": {"image": "y", "skpeal_id": 10**6},
               "annotations": [{"result": [{"type": "choices", "value": {"choices": ["red"]}}]}]}
    with pytest.raises(KeyError, match="task 7"):
        s.import_label_studio([good, unknown])
    bad = copy.deepcopy(good)
    bad["annotations"][0]["result"][0]["value"]["choices"] = ["purple"]
    with pytest.raises(ValueError, match="purple"):
        s.import_label_studio([good, bad])
    assert s.store.history() == []


# ----------------------------------------------------------------------- ML backend
@pytest.fixture
def ls_session(tmp_path, image_folder):
    folder, _ = image_folder
    s = LabelingSession(tmp_path / "ls-project", folder, LS_CLASSES,
                        estimator=tiny_estimator(), batch_size=5).prepare()
    yield s
    s.close()


def _recorded(name, image_ids):
    """A recorded request with the tasks' skpeal_id replaced by the session's image ids."""
    body = copy.deepcopy(RECORDED[name])
    tasks = body["tasks"] if name == "predict" else [body["task"]]
    for k, t in enumerate(tasks):
        t["data"]["skpeal_id"] = image_ids[k]
    return body


def test_ml_backend_over_a_session_with_recorded_requests(ls_session):
    from fastapi.testclient import TestClient

    s = ls_session
    ids = [i for i, _ in s.store.images()]
    backend = SessionBackend(s)
    assert backend.classes == LS_CLASSES and backend.model_version == "round-0"
    client = TestClient(ml_backend_app(backend))
    assert client.get("/health").json()["model_version"] == "round-0"
    r = client.post("/setup", json=RECORDED["setup"])
    assert r.status_code == 200 and r.json() == {"model_version": "round-0"}

    body = _recorded("predict", ids)
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.text
    by_id = {p["image_id"]: p for p in s.predictions()}
    results = r.json()["results"]
    assert len(results) == len(body["tasks"])
    for task, res in zip(body["tasks"], results):
        p = by_id[task["data"]["skpeal_id"]]
        assert res["result"][0]["value"] == {"choices": [p["suggestion"]]}
        assert res["score"] == pytest.approx(p["probability"])
        assert res["model_version"] == "round-0"

    # a task that is not one of the session's images: a clear 422, not a crash
    stray = copy.deepcopy(body)
    stray["tasks"][0]["data"]["skpeal_id"] = "img-0"
    r = client.post("/predict", json=stray)
    assert r.status_code == 422 and "not an image id of this session" in r.json()["detail"]

    hook = _recorded("webhook", ids)
    label = hook["annotation"]["result"][0]["value"]["choices"][0]
    r = client.post("/webhook", json=hook)
    assert r.status_code == 201, r.text
    assert s.store.labelled() == {ids[0]: label}
    (row,) = s.store.history()
    assert (row["annotator"], row["client"]) == ("label-studio", "label-studio")

    r = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert r.status_code == 201, r.text
    assert r.json()["result"]["round"] == 1 and s.model_version == "round-1"
    assert client.post("/setup", json=RECORDED["setup"]).json() == {"model_version": "round-1"}


def test_predict_before_the_session_is_prepared_is_503_not_500(tmp_path, image_folder):
    from fastapi.testclient import TestClient

    folder, _ = image_folder
    s = LabelingSession(tmp_path / "unprepared", folder, LS_CLASSES,
                        estimator=tiny_estimator(), batch_size=5)
    try:
        ids = [i for i, _ in s.store.images()]
        client = TestClient(ml_backend_app(SessionBackend(s)), raise_server_exceptions=False)
        r = client.post("/predict", json=_recorded("predict", ids))
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5" and "not prepared" in r.json()["detail"]
        s.prepare()
        assert client.post("/predict", json=_recorded("predict", ids)).status_code == 200
    finally:
        s.close()


def test_ml_backend_basic_auth_with_the_token(ls_session):
    from fastapi.testclient import TestClient

    from skpeal.labeling.app import ml_backend_for_session

    client = TestClient(ml_backend_for_session(ls_session, token="s3cret"))
    assert client.get("/health").status_code == 401
    good = "Basic " + b64encode(b"skpeal:s3cret").decode()
    assert client.get("/health", headers={"Authorization": good}).status_code == 200
    assert client.get("/health?token=s3cret").status_code == 401  # Label Studio sends basic auth
    assert TestClient(ml_backend_for_session(ls_session)).get("/health").status_code == 200


# ----------------------------------------------------------------------- stopping
def test_status_carries_the_stopping_suggestion(session_factory, image_folder):
    _, truth = image_folder
    s = session_factory()
    assert s.status()["stop_suggestion"] is None  # not prepared
    s.prepare()
    stop_ids = s.store.get_meta("stop_set")
    assert len(stop_ids) == len(truth)  # 45 images < the default 200
    sug = s.status()["stop_suggestion"]
    assert [c["name"] for c in sug["criteria"]] == ["estimated_accuracy", "kappa_average"]
    assert sug["should_stop"] is False
    acc = sug["accuracy"]  # the estimate with its interval (issue 22)
    assert acc["estimate"] == pytest.approx(s.status()["estimated_accuracy"])
    assert acc["low"] <= acc["estimate"] <= acc["high"]
    assert sug["message"] == (  # plain words: no criterion code names on the page
        f"Keep labelling: the model estimates its accuracy at "
        f"{s.status()['estimated_accuracy']:.0%} (likely between {acc['low']:.0%} and "
        f"{acc['high']:.0%}); too few rounds yet to see whether the predictions settle.")
    assert sug["message"].count("likely between") == 1
    assert all(c["n_updates"] == 1 for c in sug["criteria"])
    for _ in range(2):
        _label_some(s, truth, n=4)
        s.refit()
    sug = s.status()["stop_suggestion"]
    assert all(c["n_updates"] == 3 for c in sug["criteria"])
    # three rounds: the gain and the agreement are measured, and stay in the details
    assert "points" not in sug["message"] and "agreement" not in sug["message"]
    assert "the predictions" in sug["message"]

    # the criteria saw exactly the rounds' estimates and the stop-set predictions
    acc = EstimatedAccuracy()
    kappa = KappaAverage(classes=sorted(CLASSES))
    preds = s.store.get_meta("stop_predictions")
    assert sorted(preds) == ["0", "1", "2"]
    intervals = s.store.get_meta("accuracy_intervals")
    assert sorted(intervals) == ["0", "1", "2"]
    shown = {r["round"]: r["estimated_accuracy"] for r in s.status()["rounds"]}
    answers = s.store.get_meta("oos_answers")
    assert sorted({a[0] for a in answers}) == [1, 2] and len(answers) == 8  # 4 per refit
    for r in s.store.rounds():  # the store keeps the raw mean top probability
        est, low, high = intervals[str(r["round"])]
        acc.update(estimate=est, interval=(low, high))
        assert shown[r["round"]] == pytest.approx(est)  # the status shows the recalibrated one
        if r["round"] == 0:  # no out-of-sample answer yet: the two agree
            assert est == pytest.approx(r["estimated_accuracy"])
        kappa.update(preds[str(r["round"])])
    assert s.status()["estimated_accuracy"] == pytest.approx(intervals["2"][0])
    assert acc.estimates_ == pytest.approx(s.stopping.criteria["estimated_accuracy"].estimates_)
    assert kappa.kappas_ == s.stopping.criteria["kappa_average"].kappas_
    # the last round's stored predictions are the current model's on the stop set
    top = {p["image_id"]: p["suggestion"] for p in s.predictions()}
    assert preds["2"] == [top[i] for i in s.stopping.stop_ids]
    before = s.status()["stop_suggestion"]
    s.close()

    # a restart uses the same stop set and replays the same rounds
    again = session_factory().prepare()
    assert again.store.get_meta("stop_set") == stop_ids
    assert again.status()["stop_suggestion"] == before


def test_stop_set_is_seeded_and_bounded(tmp_path, image_folder):
    from skpeal.labeling.stop import SessionStopping
    from skpeal.labeling.store import LabelStore

    ids = list(range(1, 46))
    sets = []
    for k, seed in enumerate([0, 0, 1]):
        store = LabelStore(tmp_path / f"p{k}")
        sets.append(SessionStopping(store, ids, CLASSES, random_state=seed,
                                    stop_set_size=10).stop_ids)
        store.close()
    assert len(sets[0]) == 10 and sets[0] == sets[1] != sets[2]
    assert set(sets[0]) <= set(ids)


def test_stopping_suggestion_says_stop_when_the_criteria_agree(session_factory):
    s = session_factory().prepare()
    crit = s.stopping
    crit.criteria["kappa_average"] = KappaAverage(window=1, threshold=0.5)
    for r in range(1, 3):  # two more rounds with the same predictions on the stop set
        s.store.add_round(r, f"round-{r}", 0, 0.5, 0.0)
        crit.observe(r, s._proba, s._row, s._classes_sorted())
    sug = crit.suggestion()
    kappa = next(c for c in sug["criteria"] if c["name"] == "kappa_average")
    assert kappa["should_stop"] and sug["should_stop"]
    # the criterion that says stop first, then the estimate with its interval, once
    acc = sug["accuracy"]
    assert sug["message"].startswith("You could stop labelling: the predictions have settled "
                                      "between rounds; the model estimates "
                                      f"its accuracy at {acc['estimate']:.0%} (likely between "
                                      f"{acc['low']:.0%} and {acc['high']:.0%})")
    # plain words: the agreement and the threshold are the details' (kappa's own message)
    assert "agreement" not in sug["message"] and "1.00" in kappa["message"]
    assert sug["message"].count("likely between") == 1
    assert sug["message"].count("estimates its accuracy") == 1
    assert np.isclose(kappa["signal"], 1.0)


def test_ml_backend_of_a_restart_answers_health_at_once_and_predict_after_loading(
        tmp_path, image_folder):
    """``skpeal label --ml-backend-port`` restarted: the backend serves from the store while
    the model loads (/health at once; /predict 503 with a clear message until then)."""
    import threading

    from fastapi.testclient import TestClient

    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import ml_backend_for_session

    folder, _ = image_folder
    project = tmp_path / "ls-project"
    s = LabelingSession(project, folder, LS_CLASSES, estimator=tiny_estimator(),
                        batch_size=5).prepare()
    ids = [i for i, _ in s.store.images()]
    s.close()
    go = threading.Event()

    def build():  # the model's import and load, held until the test lets it go
        assert go.wait(120)
        return LabelingSession(project, estimator=tiny_estimator(), batch_size=5)

    starting = StartingSession(project, build)
    loader = threading.Thread(target=starting.start, daemon=True)
    loader.start()
    try:
        client = TestClient(ml_backend_for_session(starting), raise_server_exceptions=False)
        r = client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "UP", "model_class": "SessionBackend",
                            "model_version": "round-0"}  # the stored round's
        r = client.post("/predict", json=_recorded("predict", ids))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "model is still loading" in r.json()["detail"]
        # an annotation is stored at once (Label Studio sends a webhook once, and waits
        # for it about a second); training waits for the model: 503, at once
        threading.Timer(20, go.set).start()  # the old code waited for the model here
        t0 = time.monotonic()
        hook = _recorded("webhook", ids)
        r = client.post("/webhook", json=hook)
        assert r.status_code == 201, r.text
        r = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "model is still loading" in r.json()["detail"]
        assert time.monotonic() - t0 < 10
        label = hook["annotation"]["result"][0]["value"]["choices"][0]
        assert starting.store.labelled() == {ids[0]: label}
        (row,) = starting.store.history()
        assert (row["annotator"], row["round"]) == ("label-studio", 0)
        assert starting.session is None  # all of it before the model was built
        go.set()
        loader.join(120)
        r = client.post("/predict", json=_recorded("predict", ids))
        assert r.status_code == 200, r.text
        by_id = {p["image_id"]: p for p in starting.predictions()}
        task = _recorded("predict", ids)["tasks"][0]
        assert r.json()["results"][0]["result"][0]["value"] == {
            "choices": [by_id[task["data"]["skpeal_id"]]["suggestion"]]}
        assert starting.session.store.labelled() == {ids[0]: label}  # the session has it
    finally:
        go.set()
        loader.join(60)
        starting.close()
