"""LabelingSession and LabelStore: the loop, the history, crashes, exports."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from skpeal.labeling import LabelingSession, LabelStore, collect_images

from .conftest import CLASSES, TINY_EST, hold_encoding, prepare_until_ready


def test_collect_images_recursive_sorted_and_confined(tmp_path, image_folder):
    folder, truth = image_folder
    outside = tmp_path / "secret.png"
    outside.write_bytes((folder / "part0" / "img000.png").read_bytes())
    (folder / "link.png").symlink_to(outside)  # a symlink pointing out of the folder
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.png").write_bytes(outside.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    paths = collect_images(folder)
    assert paths == sorted(truth)
    assert os.fspath(outside) not in paths
    with pytest.raises(ValueError, match="not a folder"):
        collect_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="no image files"):
        collect_images(_empty(tmp_path))
    with pytest.raises(ValueError, match="is not a file"):
        collect_images([tmp_path / "nope.png"])


def test_collect_images_links_project_folder_and_names(tmp_path, image_folder):
    folder, truth = image_folder
    real = sorted(truth)[0]
    (folder / "inside.png").symlink_to(real)  # a link inside the folder: its target once
    (folder / "dirlink").symlink_to(folder / "part0", target_is_directory=True)  # not walked
    (folder / "UPPER.PNG").write_bytes(open(real, "rb").read())
    (folder / ".dot.png").write_bytes(open(real, "rb").read())  # hidden file
    project = folder / "proj"
    project.mkdir()
    (project / "thumb.png").write_bytes(open(real, "rb").read())
    (folder / "broken.png").symlink_to(tmp_path / "gone.png")
    paths = collect_images(folder, exclude=project)
    assert paths == sorted(set(truth) | {os.fspath((folder / "UPPER.PNG").resolve())})
    assert all(os.path.realpath(p) == p for p in paths)
    assert os.fspath(project / "thumb.png") in collect_images(folder)  # not excluded


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_bad_parameters_are_refused(tmp_path, image_folder):
    folder, _ = image_folder
    for classes, msg in ((["a"], "at least two"), (["a", "a"], "twice"), (["a", "b\x00"], "NUL"),
                         ("ab", "list of class names"), (["a", ""], "non-empty")):
        with pytest.raises(ValueError, match=msg):
            LabelingSession(tmp_path / "p", images=folder, classes=classes)
    with pytest.raises(ValueError, match="batch_size"):
        LabelingSession(tmp_path / "p", images=folder, classes=CLASSES, batch_size=0)
    with pytest.raises(ValueError, match="balance"):
        LabelingSession(tmp_path / "p", images=folder, classes=CLASSES, balance="x")


def test_loop_labels_skip_undo_refit_status(session_factory, image_folder):
    _, truth = image_folder
    s = session_factory().prepare()
    assert s.round == 0 and s.model_version == "round-0" and not s.stale
    batch = s.next_batch()
    assert len(batch) == 5
    assert s.next_batch() == batch  # the same batch until it is answered
    for b in batch:
        assert b["suggestion"] in CLASSES and 0 < b["probability"] <= 1
    s.label(batch[0]["image_id"], truth[batch[0]["path"]])
    s.skip(batch[1]["image_id"])
    st = s.status()
    assert st["n_labelled"] == 1 and st["n_skipped"] == 1 and st["n_pending"] == 3
    undone = s.undo()
    assert undone["image_id"] == batch[1]["image_id"] and undone["kind"] == "skip"
    assert undone["action"] == "answer" and undone["refit"] is False  # a skip trains nothing
    assert s.status()["n_skipped"] == 0
    back = s.next_batch()  # reopened after the pending batch, with the person's own answer
    assert back[-1]["image_id"] == batch[1]["image_id"] and back[-1]["reopened"]
    assert back[-1]["picked"] and back[-1]["pick"] is None  # the skip, pre-set
    assert [b["image_id"] for b in back[:3]] == [b["image_id"] for b in batch[2:]]
    with pytest.raises(ValueError, match="not one of the classes"):
        s.label(batch[2]["image_id"], "purple")
    with pytest.raises(KeyError, match="unknown image id"):
        s.label(10**6, "red")
    with pytest.raises(KeyError):  # one bad entry writes nothing
        s.answer([(batch[2]["image_id"], "red"), (10**6, "red")])
    assert s.status()["n_labelled"] == 1
    rest = s.next_batch()  # the 3 left topped up to a full batch, and the reopened one
    assert rest == back
    assert len(rest) == 6 and rest[-1]["image_id"] == batch[1]["image_id"]
    for b in rest:
        s.label(b["image_id"], truth[b["path"]])
    assert s.next_batch(client="other") and not s.store.reopened()
    info = s.refit()
    assert info["round"] == 1 and info["n_labels"] == 7
    st = s.status()
    assert st["round"] == 1 and len(st["rounds"]) == 2
    assert st["rounds"][0]["n_labels"] == 0 and st["rounds"][1]["n_labels"] == 7
    assert 0 < st["estimated_accuracy"] <= 1
    new = {b["image_id"] for b in s.next_batch()}
    assert len(new) == 5 and not new & set(s.store.labelled())
    assert (s.project / "models" / "round-1.safetensors").exists()


def test_estimated_accuracy_is_recalibrated_on_the_unlabelled_pool(session_factory,
                                                                   image_folder):
    from skpeal.stopping import accuracy_interval

    _, truth = image_folder
    s = session_factory().prepare()
    last0 = s.store.get_meta("last_predictions")  # round 0's model on the pool
    s.simulate(lambda i, p: truth[p], 1)
    labelled = set(s.store.labelled())
    rows = [k for k, i in enumerate(s._ids) if int(i) not in labelled]
    proba = s.model.predict_proba([s._paths[k] for k in rows])
    # the store keeps the raw mean top probability of the round's model
    assert s.store.rounds()[-1]["estimated_accuracy"] == pytest.approx(
        proba.max(axis=1).mean(), abs=1e-6)
    # the status shows it recalibrated on round 0's answers on the labelled batch
    answers = s.store.get_meta("oos_answers")
    assert len(answers) == len(labelled) and {a[0] for a in answers} == {1}
    want = accuracy_interval(proba, batch_confidence=[a[1] for a in answers],
                             batch_correct=[a[2] for a in answers], batch_age=[0] * len(answers),
                             previous_confidence=[dict(zip(last0["ids"], last0["conf"]))[int(
                                 s._ids[k])] for k in rows])
    assert s.status()["estimated_accuracy"] == pytest.approx(want[0], abs=1e-6)
    assert s.status()["stop_suggestion"]["accuracy"]["low"] == pytest.approx(want[1], abs=1e-6)


def test_corrections_and_undos_add_rows_latest_in_force(session_factory):
    s = session_factory().prepare()
    image = s.next_batch()[0]["image_id"]
    s.label(image, "red")
    s.label(image, "green", client="tab-2")  # a second answer (another tab): both kept
    assert s.store.labelled()[image] == "green"
    s.undo(client="tab-2")
    assert s.store.labelled()[image] == "red"  # undo brings the previous answer back
    kinds = [(r["kind"], r["label"]) for r in s.store.history() if r["image_id"] == image]
    assert kinds == [("label", "red"), ("label", "green"), ("undo", None)]
    assert s.undo(client="nobody") is None


def test_two_clients_never_get_the_same_image(session_factory):
    s = session_factory(batch_size=4).prepare()
    a = {b["image_id"] for b in s.next_batch(client="tab-a")}
    b = {b["image_id"] for b in s.next_batch(client="tab-b")}
    assert len(a) == len(b) == 4 and not a & b
    assert {x["image_id"] for x in s.next_batch(client="tab-a")} == a
    s.store.release("tab-a")
    c = {x["image_id"] for x in s.next_batch(client="tab-c")}
    assert c == a


def test_leases_expire(session_factory):
    s = session_factory(batch_size=3, lease_seconds=0.05).prepare()
    a = {b["image_id"] for b in s.next_batch(client="tab-a")}
    time.sleep(0.1)
    assert {b["image_id"] for b in s.next_batch(client="tab-b")} == a


def test_restart_resumes_the_same_pending_batch_and_model(session_factory, image_folder):
    _, truth = image_folder
    s = session_factory().prepare()
    s.simulate(lambda i, p: truth[p], 1)
    batch = s.next_batch()
    s.label(batch[0]["image_id"], "red")
    status = s.status()
    s.close()
    s2 = session_factory(images=None, classes=None).prepare()
    assert s2.round == 1
    assert s2.stale  # one label more than round 1 was trained on
    again = [b["image_id"] for b in s2.next_batch()]
    assert again[:4] == [b["image_id"] for b in batch[1:]]  # then one more, a full batch
    st = s2.status()
    assert st["counts"] == status["counts"] and st["rounds"] == status["rounds"]
    with pytest.raises(ValueError, match="project with classes"):
        session_factory(classes=["cat", "dog"])


def test_simulated_oracle_is_reproducible(tmp_path, image_folder):
    from skpeal import CLIPAdapterClassifier

    folder, truth = image_folder
    runs = []
    for k in range(2):
        s = LabelingSession(tmp_path / f"p{k}", images=folder, classes=CLASSES, batch_size=5,
                            estimator=CLIPAdapterClassifier(**TINY_EST))
        out = s.simulate(lambda i, p: truth[p], 2)
        runs.append(([r["estimated_accuracy"] for r in out], sorted(s.store.labelled())))
        s.close()
    assert runs[0] == runs[1]


def test_exports(session_factory, image_folder, tmp_path):
    from skpeal import CLIPAdapterClassifier

    _, truth = image_folder
    s = session_factory().prepare()
    s.simulate(lambda i, p: truth[p], 1)
    s.skip(s.next_batch()[0]["image_id"])
    text = s.export_csv(tmp_path / "labels.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (tmp_path / "labels.csv").read_text() == text
    assert len(rows) == 5 and all(truth[r["path"]] == r["label"] for r in rows)
    assert {"image_id", "label", "annotator", "labelled_at", "round", "model_version"} <= set(
        rows[0])
    hist = list(csv.DictReader(io.StringIO(s.export_csv(history=True))))
    assert [r["kind"] for r in hist].count("skip") == 1
    n = s.export_folder(tmp_path / "out")
    assert n == 5
    files = sorted(tmp_path.joinpath("out").rglob("*.png"))
    assert len(files) == 5
    for f in files:
        assert any(truth[p] == f.parent.name and Path(p).name == f.name for p in truth)
    s.export_adapter(tmp_path / "adapter.safetensors")
    est = CLIPAdapterClassifier(**TINY_EST).set_params(classes=CLASSES)
    est.load_adapter(tmp_path / "adapter.safetensors")
    paths = sorted(truth)[:4]
    np.testing.assert_allclose(est.predict_proba(paths), s.model.predict_proba(paths), atol=1e-6)


def test_store_schema_is_plain_sqlite(session_factory):
    import sqlite3

    s = session_factory().prepare()
    s.label(s.next_batch()[0]["image_id"], "blue")
    db = sqlite3.connect(s.store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "images", "labels", "rounds", "pending"} <= tables
    assert db.execute("SELECT label, annotator, round, model_version FROM labels").fetchall() == [
        ("blue", s.annotator, 0, "round-0")]
    assert json.loads(db.execute("SELECT value FROM meta WHERE key='classes'").fetchone()[0]) \
        == CLASSES


def test_store_refuses_another_schema_version(tmp_path):
    store = LabelStore(tmp_path)
    store.set_meta("schema_version", 99)
    store.close()
    with pytest.raises(ValueError, match="schema version 99"):
        LabelStore(tmp_path)


_CHILD = textwrap.dedent("""
    import sys
    from skpeal import CLIPAdapterClassifier
    from skpeal.labeling import LabelingSession
    s = LabelingSession(sys.argv[1], images=sys.argv[2], classes={classes!r}, batch_size=5,
                        estimator=CLIPAdapterClassifier(**{est!r}))
    s.prepare()
    print("PENDING", " ".join(str(b["image_id"]) for b in s.next_batch()), flush=True)
    i = 0
    while True:
        for b in s.next_batch():
            row = s.label(b["image_id"], {classes!r}[i % 3])
            print("ACK", b["image_id"], row, flush=True)  # the label() call returned
            i += 1
        if i >= 10 and i % 5 == 0:
            s.refit()
""")


def test_kill_9_loses_no_acknowledged_label(tmp_path, image_folder):
    from skpeal import CLIPAdapterClassifier

    folder, _ = image_folder
    project = tmp_path / "project"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(classes=CLASSES, est=TINY_EST))
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, os.fspath(script), os.fspath(project),
                             os.fspath(folder)], stdout=subprocess.PIPE, text=True, env=env)
    acks = []
    try:
        first = proc.stdout.readline().split()
        assert first[0] == "PENDING", first
        for line in proc.stdout:
            word, image, row = line.split()
            acks.append((int(image), int(row)))
            if len(acks) >= 13:  # mid-round, after a refit
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # lines written before the kill count as acknowledged too
        for line in proc.stdout.read().splitlines():
            word, image, row = line.split()
            acks.append((int(image), int(row)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = LabelStore(project)
    hist = store.history()
    ids = [r["id"] for r in hist]
    for image, row in acks:
        assert ids.count(row) == 1
        assert [r["image_id"] for r in hist if r["id"] == row] == [image]
    labelled = store.labelled()
    assert {image for image, _ in acks} <= set(labelled)
    store.close()
    # the restarted session resumes: same labels, the pending batch it left
    s = LabelingSession(project, estimator=CLIPAdapterClassifier(**TINY_EST))
    pending_before = [p["image_id"] for p in s.store.pending()]
    s.prepare()
    assert [b["image_id"] for b in s.next_batch()][: len(pending_before)] == pending_before[:5]
    assert set(labelled) == set(s.store.labelled())
    s.close()


def test_folder_names_of_classes():
    from skpeal.labeling.session import folder_name

    assert folder_name("T-shirt/top") == "T-shirt_top"
    assert folder_name("..") == "_" and folder_name("a\\b:c") == "a_b_c"
    assert folder_name("Ankle boot") == "Ankle boot"


def test_export_folder_with_a_slash_in_a_class_name(tmp_path, image_folder):
    from skpeal import CLIPAdapterClassifier

    folder, truth = image_folder
    s = LabelingSession(tmp_path / "p", images=folder, classes=["T-shirt/top", "../x"],
                        estimator=CLIPAdapterClassifier(**TINY_EST), batch_size=2)
    s.prepare()
    a, b = s.next_batch()
    s.label(a["image_id"], "T-shirt/top")
    s.label(b["image_id"], "../x")
    assert s.export_folder(tmp_path / "out") == 2
    assert sorted(p.parent.name for p in (tmp_path / "out").rglob("*.png")) == [
        ".._x", "T-shirt_top"]
    assert all(p.resolve().is_relative_to((tmp_path / "out").resolve())
               for p in (tmp_path / "out").rglob("*"))
    s.close()


def test_predictions_cover_every_image(session_factory):
    s = session_factory()
    with pytest.raises(RuntimeError, match="prepare"):
        s.predictions()
    s.prepare()
    preds = s.predictions()
    assert [p["image_id"] for p in preds] == [i for i, _ in s.store.images()]
    proba = s.model.predict_proba([p["path"] for p in preds[:3]])
    for p, row in zip(preds, proba):
        assert p["probability"] == pytest.approx(row.max(), abs=1e-6)
        assert p["suggestion"] == s.model.classes_[row.argmax()]
        assert p["model_version"] == "round-0" and p["entropy"] >= 0


@pytest.mark.parametrize("train_batch", ["labels", "estimator"])
def test_refit_trains_on_all_labels_in_one_batch_when_image_features_are_cached(
        session_factory, image_folder, train_batch):
    _, truth = image_folder
    s = session_factory(train_batch=train_batch).prepare()
    for b in s.next_batch():
        s.label(b["image_id"], truth[b["path"]])
    s.refit()
    n = len(s.store.labelled())
    want = n if train_batch == "labels" else s.estimator.get_params()["batch_size"]
    assert s.model.get_params()["batch_size"] == want
    assert len(s.model.history_) == s.model.get_params()["max_epochs"]
    # an image tower that trains (LoRA on it) keeps the estimator's batch
    s.estimator.set_params(adapter="lora", lora_towers="both", lora_r=2)
    assert s.loop.estimator_for(2, n_labels=n).get_params()["batch_size"] == \
        s.estimator.get_params()["batch_size"]


def test_train_batch_is_checked(tmp_path, image_folder):
    folder, _ = image_folder
    with pytest.raises(ValueError, match="train_batch"):
        LabelingSession(tmp_path / "p", images=folder, classes=CLASSES, train_batch=8)


def test_image_features_persist_in_the_project_and_are_not_encoded_again(session_factory):
    from skpeal.features import clear_feature_cache, get_feature_cache

    clear_feature_cache()
    s = session_factory().prepare()
    files = list((s.project / "features").glob("*.npz"))
    assert len(files) == 1
    s.close()
    clear_feature_cache()  # a new process: nothing in memory
    s2 = session_factory().prepare()
    stats = get_feature_cache().stats()
    assert stats["misses"] == 0 and stats["hits"] >= 45, stats  # every image from the file
    assert s2.ready and s2.round == 0
    # a changed image file has another key: it is encoded again, never read stale
    path = s2._paths[0]
    os.utime(path, ns=(10**18, 10**18))
    s2.close()
    clear_feature_cache()
    session_factory().prepare()
    assert get_feature_cache().stats()["misses"] >= 1


@pytest.mark.parametrize("strategy", ["entropy", "auto"])  # probabilities; and features
def test_first_batch_before_the_whole_pool_is_encoded(session_factory, monkeypatch, strategy):
    from skpeal.labeling import session as session_module

    monkeypatch.setattr(session_module, "FIRST_ENCODED", 10)
    monkeypatch.setattr(session_module, "ENCODE_CHUNK", 8)
    # the first chunk after the sample: the encoding is held there
    calls, gate = hold_encoding(monkeypatch, 2, "predict_proba_embed" if strategy == "auto"
                                else "predict_proba")
    s = session_factory(strategy=strategy)
    worker = prepare_until_ready(s)
    try:
        assert s.ready and s.streaming and s.state["phase"] == "encoding"
        assert calls[0] == 10 and s.state["done"] == 10 and s.state["total"] == 45
        batch = s.next_batch()
        encoded = set(np.flatnonzero(~np.isnan(s._proba[:, 0])))
        assert len(batch) == 5 and {s._row[b["image_id"]] for b in batch} <= encoded
        assert len(encoded) == 10
        assert s.store.rounds() == []  # round 0 is recorded once every image is scored
        with pytest.raises(RuntimeError, match="still being encoded"):
            s.predictions()
    finally:
        gate.set()
        worker.join(60)
    assert not s.streaming and s.state["phase"] == "ready"
    assert not np.isnan(s._proba).any() and len(s.store.rounds()) == 1
    assert s.next_batch() == batch  # the first batch stays
    assert sum(calls) == 45  # every image scored once


def test_batches_while_encoding_come_from_every_image_encoded_so_far(session_factory,
                                                                    monkeypatch):
    """Not only from the first sample: once it is answered the next batch comes from the
    chunks encoded since, and the progress moves with each chunk (issue 23 item 5)."""
    import threading

    from skpeal.labeling import session as session_module

    monkeypatch.setattr(session_module, "FIRST_ENCODED", 10)
    monkeypatch.setattr(session_module, "ENCODE_CHUNK", 512)  # chunks of FIRST_ENCODED
    calls, gate = hold_encoding(monkeypatch, 3)  # held after the sample and one chunk
    s = session_factory(strategy="auto")
    worker = threading.Thread(target=s.prepare)
    worker.start()
    try:
        t0 = time.time()
        while len(calls) < 3 and time.time() - t0 < 60:
            time.sleep(0.02)
        assert calls == [10, 10, 10] and s.streaming
        assert s.state["done"] == 20 and s.state["total"] == 45
        seen = set()
        for _ in range(4):  # 20 images encoded: four batches of 5
            batch = s.next_batch()
            assert len(batch) == 5
            seen |= {b["image_id"] for b in batch}
            s.answer([(b["image_id"], "red") for b in batch])
        encoded = {int(s._ids[k]) for k in np.flatnonzero(~np.isnan(s._proba[:, 0]))}
        assert seen == encoded and len(seen) == 20
        assert s.next_batch() == []  # nothing else encoded yet
    finally:
        gate.set()
        worker.join(60)
    assert not s.streaming and len(s.next_batch()) == 5


def test_batches_stay_among_encoded_images_until_the_full_scores_are_in(session_factory,
                                                                        monkeypatch):
    """Between the end of the encoding and the full scores (the features being written to
    the project), a new batch comes from the encoded images, never from unscored ones."""
    from skpeal.labeling import session as session_module
    from skpeal.labeling.project_features import ProjectFeatures

    monkeypatch.setattr(session_module, "FIRST_ENCODED", 10)
    s = session_factory(strategy="entropy")
    seen = {}
    original = ProjectFeatures.save

    def save(self, est, paths):
        if s.ready and "b" not in seen:  # prepare's save, after the last image is encoded
            seen["a"] = s.next_batch(client="a")
            seen["b"] = s.next_batch(client="b")  # a new batch, picked now
        return original(self, est, paths)

    monkeypatch.setattr(ProjectFeatures, "save", save)
    s.prepare()
    first = {b["image_id"] for b in seen["a"]}
    assert len(seen["a"]) == 5 and len(seen["b"]) == 5
    assert not first & {b["image_id"] for b in seen["b"]}
    assert all(np.isfinite(b["probability"]) for b in seen["a"] + seen["b"])


def test_a_refit_after_a_restart_keeps_every_batch_shown_and_replaces_those_never_shown(
        session_factory):
    """``refit(keep_batch=True)`` (the server's refit after a restart, or on labels given
    while the model loaded): the batches tabs were shown stay whole, in order; a batch
    stored ahead that no tab was shown is the new model's pick instead."""
    s = session_factory(strategy="entropy")
    s.prepare()
    a = [it["image_id"] for it in s.next_batch(client="a")]
    b = [it["image_id"] for it in s.next_batch(client="b")]
    s.answer([(a[0], "red")], client="a")
    s._refill(need=5)  # a batch stored ahead, shown to no tab
    ahead = [p["image_id"] for p in s.store.pending() if p["client"] is None]
    assert len(ahead) == 5
    s.store.release_all()  # a restart: no tab holds anything
    s.refit(keep_batch=True)
    pending = s.store.pending()
    assert [p["image_id"] for p in pending][:9] == a[1:] + b
    assert all(p["round"] == 1 for p in pending[9:])  # the new model's, if any yet
