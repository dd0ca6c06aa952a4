"""A labelling session's labels through Label Studio's formats and back, and the stopping
criteria fed from the session's rounds.

Skipped until the labelling session (``skpeal.labeling.session``) is present.
"""

import json

import numpy as np
import pytest
from PIL import Image

session_mod = pytest.importorskip("skpeal.labeling.session")

from skpeal.labeling.labelstudio import export_tasks, import_labels  # noqa: E402
from skpeal.stopping import EstimatedAccuracy  # noqa: E402

CLASSES = ["red", "green", "blue"]


def _images(folder, n=24):
    rng = np.random.default_rng(0)
    truth = {}
    folder.mkdir(parents=True)
    for i in range(n):
        c = i % 3
        a = rng.integers(0, 80, size=(32, 32, 3), dtype=np.uint8)
        a[..., c] += 170
        p = folder / f"img{i:03d}.png"
        Image.fromarray(a).save(p)
        truth[p.name] = CLASSES[c]
    return truth


def _session(project, images):
    from skpeal import CLIPAdapterClassifier

    est = CLIPAdapterClassifier(model="skpeal-tiny", pretrained=None, n_ctx=4, max_epochs=1,
                                random_state=0)
    return session_mod.LabelingSession(project, images, CLASSES, estimator=est, batch_size=6)


def test_session_labels_round_trip_through_label_studio_json(tmp_path):
    truth = _images(tmp_path / "images")
    session = _session(tmp_path / "project", tmp_path / "images").prepare()
    batch = session.next_batch()
    for item in batch[:5]:
        session.label(item["image_id"], truth[item["path"].rsplit("/", 1)[-1]])
    session.skip(batch[5]["image_id"])
    labelled = session.store.labelled()
    assert len(labelled) == 5

    rows = session.store.images()
    suggestions = {b["image_id"]: (b["suggestion"], b["probability"]) for b in batch}
    tasks = export_tasks(
        [path for _, path in rows], ids=[i for i, _ in rows],
        predictions=[suggestions.get(i, (None, None))[0] for i, _ in rows],
        scores=[suggestions.get(i, (None, None))[1] for i, _ in rows],
        model_version=session.model_version, labels=[labelled.get(i) for i, _ in rows],
        classes=session.classes)
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(tasks))
    imported = import_labels(path, classes=session.classes)
    assert {x.key: x.label for x in imported} == labelled

    # the labels go into a new project (as they would come back from Label Studio)
    other = _session(tmp_path / "project2", tmp_path / "images")
    ids = {p: i for i, p in other.store.images()}
    by_path = dict(rows)
    for x in imported:
        other.label(ids[by_path[x.key]], x.label, annotator="label-studio")
    other_paths = dict(other.store.images())
    got = {other_paths[i]: lab for i, lab in other.store.labelled().items()}
    assert got == {by_path[i]: lab for i, lab in labelled.items()}
    session.close()
    other.close()


def test_estimated_accuracy_replays_the_session_rounds(tmp_path):
    _images(tmp_path / "images")
    session = _session(tmp_path / "project", tmp_path / "images").prepare()
    crit = EstimatedAccuracy(window=1)
    for r in session.store.rounds():
        if r["estimated_accuracy"] is not None:
            crit.update(estimate=r["estimated_accuracy"])
    assert crit.n_updates_ == len(session.store.rounds()) >= 1
    session.close()
