"""A new project whose first batch is drawn at random, before any model.

``skpeal label --init random`` makes the project (:func:`start_project_without_model`: the folder
listed, the batch drawn, without torch or scikit-learn) and serves it as a restarted one
while the model loads. The batch is the one the session would draw itself, and the batch
after it is the model's, as in a session that drew it.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from skpeal.labeling import LabelingSession
from skpeal.labeling._project import start_project_without_model
from skpeal.labeling.store import LabelStore

from .conftest import CLASSES, tiny_estimator


def _paths(batch):
    return [it["path"] for it in batch]


@pytest.mark.parametrize("init", ["random", "pixels"])
def test_the_drawn_batch_is_the_sessions_own_and_the_next_one_is_the_models(
        tmp_path, image_folder, session_factory, init):
    folder, truth = image_folder
    ref = LabelingSession(tmp_path / "ref", images=folder, classes=CLASSES,
                          estimator=tiny_estimator(), batch_size=5, init=init)
    try:
        ref.prepare()
        first, second = _paths(ref.next_batch(client="a")), _paths(ref.next_batch(client="b"))
    finally:
        ref.close()

    project = tmp_path / "project"  # session_factory's
    assert start_project_without_model(project, folder, CLASSES, {
        "batch_size": 5, "preselect_threshold": 0.0, "init": init}) == 45
    assert [p.name for p in project.iterdir()] == ["labels.sqlite"]  # no temporary left
    store = LabelStore(project)
    try:
        assert store.get_meta("settings")["init"] == init
        paths = dict(store.images())
        pending = store.pending()
        assert [paths[it["image_id"]] for it in pending] == first
        assert all(it["suggestion"] is None and it["probability"] is None for it in pending)
    finally:
        store.close()

    store = LabelStore(project)  # a pick made while the model loaded
    store.add_picks([(pending[1]["image_id"], CLASSES[0])], client="a")
    store.close()
    s = session_factory(init=init)
    s.prepare()
    batch = s.next_batch(client="a")
    if init == "pixels":  # three colour classes of 15: the five picks cover all three
        assert {truth[os.path.realpath(p)] for p in first} == set(CLASSES)
    assert _paths(batch) == first  # kept: not drawn again, not replaced by the model's
    # with the model's suggestions now (all pre-selected at threshold 0), the pick kept
    assert all(it["suggestion"] in CLASSES and it["preselect"] for it in batch)
    proba = s._proba[[s._row[it["image_id"]] for it in batch]]
    assert [it["probability"] for it in batch] == pytest.approx(proba.max(axis=1).tolist())
    assert [it["picked"] for it in batch] == [False, True, False, False, False]
    assert _paths(s.next_batch(client="b")) == second  # the model's pick, not a 2nd draw


def test_a_drawn_batch_is_encoded_first_and_gets_its_suggestions_at_once(
        tmp_path, image_folder, session_factory, monkeypatch):
    """On a pool encoded in chunks, the first images encoded are the pending batch's (then
    a random sample): its suggestions come with the first partial scores, not once its
    images' chunks are encoded (which, on a large pool, is after the person answered)."""
    from skpeal.labeling import session as session_module

    from .conftest import hold_encoding, prepare_until_ready

    monkeypatch.setattr(session_module, "FIRST_ENCODED", 10)
    monkeypatch.setattr(session_module, "ENCODE_CHUNK", 8)
    calls, gate = hold_encoding(monkeypatch, 2, "predict_proba")
    start_project_without_model(tmp_path / "project", image_folder[0], CLASSES,
                                {"batch_size": 5, "random_state": 3})
    s = session_factory(init="random", strategy="entropy", random_state=3)
    seen, suggest = [], s._suggest_pending
    # never ready and not streaming while streaming (both are read without the lock)
    monkeypatch.setattr(s, "_suggest_pending", lambda: seen.append(
        (s.ready, s.streaming)) or suggest())
    worker = prepare_until_ready(s)
    try:
        assert s.ready and s.streaming
        first = s.next_batch(client="a")
        assert calls[0] == 10 and np.isnan(s._proba[:, 0]).sum() == 45 - 10
        assert all(not np.isnan(s._proba[s._row[it["image_id"]]]).any() for it in first)
        assert all(it["suggestion"] is not None for it in first)
    finally:
        gate.set()
        worker.join(60)
    assert not s.streaming and seen[0] == (True, True)
    batch = s.next_batch(client="a")
    assert _paths(batch) == _paths(first) and all(it["suggestion"] for it in batch)


@pytest.mark.parametrize("init, heavy", [("random", ("torch", "sklearn", "open_clip")),
                                         ("pixels", ("torch", "open_clip"))])
def test_no_torch_is_imported(tmp_path, image_folder, init, heavy):
    """Nor scikit-learn with a random batch (the pixels' k-means is scikit-learn's)."""
    folder, _ = image_folder
    code = ("import sys\n"
            "from skpeal.labeling._project import start_project_without_model\n"
            f"n = start_project_without_model({str(tmp_path / 'p')!r}, {str(folder)!r}, "
            f"{CLASSES!r}, {{'init': {init!r}}})\n"
            f"heavy = [m for m in {heavy!r} if m in sys.modules]\n"
            "assert n == 45 and not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_a_failure_half_way_leaves_no_project(tmp_path, image_folder, monkeypatch):
    folder, _ = image_folder
    project = tmp_path / "p"

    def killed(self, items, round):
        raise KeyboardInterrupt  # as a kill would, after the images are stored

    with monkeypatch.context() as m:
        m.setattr(LabelStore, "set_pending", killed)
        with pytest.raises(KeyboardInterrupt):
            start_project_without_model(project, folder, CLASSES)
    assert list(project.iterdir()) == []  # no labels.sqlite, no temporary folder
    (project / ".new-project-killed").mkdir()  # as a kill -9 half-way would leave it,
    os.utime(project / ".new-project-killed", (0, 0))  # long ago
    (project / ".new-project-now").mkdir()  # another process's, being made: kept
    start_project_without_model(project, folder, CLASSES)  # a new start makes it whole
    store = LabelStore(project)
    try:
        assert len(store.pending()) == 10 and store.get_meta("classes") == CLASSES
    finally:
        store.close()
    assert sorted(p.name for p in project.iterdir()) == [".new-project-now", "labels.sqlite"]


@pytest.mark.parametrize("classes, settings, match", [
    (None, None, "a new project needs its class names"),
    (["a"], None, "at least two class names"),
    (CLASSES, {"init": "zero-shot"}, "init must be one of 'random', 'pixels'"),
    (CLASSES, {"batch_size": 0}, "batch_size must be"),
])
def test_bad_input_is_refused_before_anything_is_made(tmp_path, image_folder, classes,
                                                      settings, match):
    with pytest.raises(ValueError, match=match):
        start_project_without_model(tmp_path / "p", image_folder[0], classes, settings)
    assert not (tmp_path / "p").exists()


def test_an_existing_project_is_refused(tmp_path, image_folder):
    start_project_without_model(tmp_path / "p", image_folder[0], CLASSES)
    with pytest.raises(ValueError, match="is a project already"):
        start_project_without_model(tmp_path / "p", image_folder[0], CLASSES)


def test_a_project_another_process_made_meanwhile_is_kept(tmp_path, image_folder,
                                                          monkeypatch):
    project = tmp_path / "p"
    original = LabelStore.set_pending

    def meanwhile(self, items, round):  # another `skpeal label` made the project now
        monkeypatch.setattr(LabelStore, "set_pending", original)
        start_project_without_model(project, image_folder[0], ["x", "y"])
        return original(self, items, round)

    monkeypatch.setattr(LabelStore, "set_pending", meanwhile)
    with pytest.raises(ValueError, match="made by another process meanwhile"):
        start_project_without_model(project, image_folder[0], CLASSES)
    store = LabelStore(project)
    try:
        assert store.get_meta("classes") == ["x", "y"]  # the other one's, not replaced
    finally:
        store.close()
    assert [p.name for p in project.iterdir()] == ["labels.sqlite"]
