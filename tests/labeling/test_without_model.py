"""A project whose first batch needed no model is served without it while the model loads.

``skpeal label`` (``--init pixels``, the default of a new project, or ``--init random``)
serves the page before torch is loaded. A person who answers the first batch before the
model is there does not wait for it: the submit is stored at once, the next batch is
picked the way the first was (the labelled images clustered too), an undo of an answer
reopens it from the store; once the model is up, a refit trains on those labels and the
batch on screen stays.
"""

import threading
import time

import pytest
from fastapi.testclient import TestClient

from skpeal.labeling._project import start_project_without_model
from skpeal.labeling._starting import StartingSession
from skpeal.labeling.app import create_app

from .conftest import CLASSES


def _batch(client, who="a"):
    r = client.get("/api/batch", params={"client": who})
    assert r.status_code == 200, r.text
    return r.json()


def _answer(client, items, truth, paths, who="a"):
    answers = [{"image_id": it["image_id"], "label": truth[paths[it["image_id"]]]}
               for it in items]
    r = client.post("/api/answers", json={"client": who, "answers": answers})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("init", ["pixels", "random"])
def test_batches_answers_and_undo_while_the_model_loads_then_a_refit_on_them(
        tmp_path, image_folder, session_factory, init):
    import os

    folder, truth = image_folder
    project = tmp_path / "project"  # session_factory's
    start_project_without_model(project, folder, CLASSES, {"batch_size": 5, "init": init})
    go, built = threading.Event(), []

    def build():  # the model's import and load, held until the test lets it go
        assert go.wait(120)
        built.append(session_factory(images=None, classes=None))
        return built[-1]

    starting = StartingSession(project, build, annotator="ann")
    paths = {i: os.path.realpath(p) for i, p in starting.store.images()}
    app = create_app(starting, model_wait=0.2)
    try:
        with TestClient(app) as client:
            first = _batch(client)["items"]
            assert len(first) == 5 and all(it["suggestion"] is None for it in first)
            # the next batch is picked ahead while the person answers (held by no one)
            deadline = time.monotonic() + 60
            while not app.state.ahead.ready and time.monotonic() < deadline:
                time.sleep(0.05)
            ahead = [p["image_id"] for p in starting.store.pending() if p["client"] is None]
            assert len(ahead) == 5 and not set(ahead) & {it["image_id"] for it in first}
            r = _answer(client, first, truth, paths)  # taken at once: no 503 (model_wait)
            assert r["saved"] == 5 and r["refit"] and starting.session is None
            second = _batch(client)
            assert second["ready"] and len(second["items"]) == 5
            ids1, ids2 = ([it["image_id"] for it in b] for b in (first, second["items"]))
            assert ids2 == ahead  # the batch picked ahead: given at once
            assert all(it["suggestion"] is None for it in second["items"])
            labels = starting.store.labelled()
            assert len(labels) == 5 and {r["annotator"] for r in starting.store.in_force()} \
                == {"ann"}
            # the same batch again (a reload), not a new one
            assert [it["image_id"] for it in _batch(client)["items"]] == ids2
            # no pick on screen: the undo reopens the last answer, with the person's answer
            r = client.post("/api/undo", json={"client": "a"})
            assert r.status_code == 200, r.text
            undone = r.json()["undone"]
            assert undone["action"] == "answer" and undone["image_id"] in ids1
            items = _batch(client)["items"]
            assert [it["image_id"] for it in items] == ids2 + [undone["image_id"]]
            assert items[-1]["reopened"] and items[-1]["pick"] == truth[
                paths[undone["image_id"]]]
            assert starting.session is None  # all of it before the model
            _answer(client, items, truth, paths)  # the batch and the reopened image
            third = [it["image_id"] for it in _batch(client)["items"]]
            assert len(third) == 5 and not set(third) & set(ids1 + ids2)
            assert len(starting.store.labelled()) == 10
            go.set()  # the model is up: round 0, then a refit on the 10 labels
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                    starting.session is None or app.state.worker.busy
                    or not starting.store.rounds()
                    or starting.store.rounds()[-1]["round"] < 1):
                time.sleep(0.05)
            rounds = starting.store.rounds()
            assert [(r["round"], r["n_labels"]) for r in rounds] == [(0, 0), (1, 10)]
            after = _batch(client)["items"]
            assert [it["image_id"] for it in after] == third  # the batch on screen stays
            assert all(it["suggestion"] in CLASSES for it in after)  # now with suggestions
            assert not built[0].stale
            # the batches round 0 stored ahead meanwhile went with its refit: the next
            # batches are round 1's (the batch on screen stays)
            assert all(p["round"] >= 1 for p in starting.store.pending() if p["client"] is None)
    finally:
        go.set()
        app.state.worker.stop(timeout=60)
        starting.close()


def test_a_zero_shot_project_still_waits_for_the_model(session_factory):
    """Only a project whose first batch needed no model is served without it."""
    s = session_factory(init="zero-shot")
    s.prepare()
    s.next_batch(client="a")
    project = s.project
    s.close()
    starting = StartingSession(project, lambda: None)
    try:
        assert not starting.without_model and starting.ready  # its pending batch only
        starting._refill(need=5)  # no batch picked without the model
        assert len(starting.store.pending()) == 5
    finally:
        starting.close()


def test_a_batch_picked_ahead_without_the_model_goes_when_the_model_is_built(
        tmp_path, image_folder):
    """Picked ahead so that a fast person does not wait; once the session is built, the
    model picks the next batch instead (the batch on screen stays)."""
    project = tmp_path / "project"
    start_project_without_model(project, image_folder[0], CLASSES,
                                {"batch_size": 5, "init": "pixels"})
    prepared, built = threading.Event(), threading.Event()

    class Session:  # the built session, its preparation held
        ready = False

        def prepare(self):
            built.set()
            assert prepared.wait(60)

        def close(self):
            pass

    starting = StartingSession(project, Session)
    try:
        shown = [it["image_id"] for it in starting.next_batch(client="a")]
        assert starting.pick_ahead() and starting.picked_ahead()
        ahead = [p["image_id"] for p in starting.store.pending() if p["client"] is None]
        assert len(ahead) == 5 and not starting.pick_ahead()  # one batch ahead only
        thread = threading.Thread(target=starting.start)
        thread.start()
        assert built.wait(60)
        assert [p["image_id"] for p in starting.store.pending()] == shown
        assert not starting.without_model and not starting.pick_ahead()
        prepared.set()
        thread.join(60)
    finally:
        prepared.set()
        starting.close()
