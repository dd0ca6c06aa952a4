"""``skpeal label``: arguments and one-line errors (the server itself: test_browser.py)."""

import pytest

from skpeal.cli import _parser, main

from .conftest import free_port


def test_label_arguments_and_defaults():
    args = _parser().parse_args(["label", "photos", "--classes", "cat", "dog"])
    assert args.command == "label" and args.images == "photos"
    assert args.classes == ["cat", "dog"] and args.host == "127.0.0.1" and args.port == 8000
    assert args.project is None and args.batch_size is None  # the project's, else 10
    assert args.init is None  # the project's, else zero-shot
    assert _parser().parse_args(["label", "p", "--init", "random"]).init == "random"
    assert _parser().parse_args(["label", "p", "--init", "pixels"]).init == "pixels"


@pytest.mark.parametrize("extra, match", [
    ([], "a new project needs its class names"),
    (["--classes", "cat"], "at least two class names"),
    (["--classes", "cat", "cat"], "listed twice"),
    (["--init", "random"], "a new project needs its class names"),
    (["--init", "random", "--classes", "cat", "cat"], "listed twice"),
])
def test_bad_label_arguments_give_one_clear_line(tmp_path, capsys, image_folder, extra, match):
    folder, _ = image_folder
    assert main(["label", str(folder), "--model", "skpeal-tiny", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skpeal: error:") and match in err[0], err
    assert not (folder / ".skpeal").exists()  # nothing was created


def test_missing_image_folder(tmp_path, capsys):
    assert main(["label", str(tmp_path / "nope"), "--classes", "a", "b"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("init", [[], ["--init", "random"], ["--init", "pixels"]])
def test_a_new_project_with_no_image_stops_with_one_line_and_makes_nothing(tmp_path, capsys,
                                                                         init):
    """A new project's page comes first; an empty folder, found behind it, stops it (with a
    random first batch, before the page: the folder is listed to draw it)."""
    pytest.importorskip("fastapi")
    (tmp_path / "empty").mkdir()
    assert main(["label", str(tmp_path / "empty"), "--classes", "a", "b", "--port", "0",
                 "--project", str(tmp_path / "p"), "--model", "skpeal-tiny", *init]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no image files" in err[0], err
    assert not (tmp_path / "p").exists()


def test_label_ml_backend_port_argument():
    args = _parser().parse_args(["label", "photos", "--ml-backend-port", "9090"])
    assert args.ml_backend_port == 9090
    assert _parser().parse_args(["label", "photos"]).ml_backend_port is None


def test_label_serves_the_ml_backend_beside_the_page(tmp_path, image_folder):
    """``skpeal label --ml-backend-port``: Label Studio's endpoints over the same session."""
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    pytest.importorskip("fastapi")
    folder, _ = image_folder

    port, ml_port = free_port(), free_port()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.fspath(root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "skpeal.cli", "label", os.fspath(folder), "--classes", "red",
         "green", "blue", "--project", os.fspath(tmp_path / "p"), "--port", str(port),
         "--ml-backend-port", str(ml_port), "--model", "skpeal-tiny", "--epochs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        while not any("open http" in x for x in lines):
            line = proc.stdout.readline()
            assert line, "the server did not start:\n" + "".join(lines)
            lines.append(line)
        ml_line = next(x for x in lines if "ML backend" in x)
        assert re.search(rf"http://127\.0\.0\.1:{ml_port}\b", ml_line)
        assert "password" not in ml_line  # no auth on the loopback
        base = f"http://127.0.0.1:{ml_port}"
        t0 = time.time()
        while True:  # the session prepares in the background
            with urllib.request.urlopen(base + "/health", timeout=10) as r:
                health = json.loads(r.read())
            if health["model_version"] == "round-0" or time.time() - t0 > 120:
                break
            time.sleep(0.5)
        assert health["status"] == "UP" and health["model_version"] == "round-0"
        req = urllib.request.Request(
            base + "/predict", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"tasks": [{"id": 1, "data": {"image": "x", "skpeal_id": 1}}]})
            .encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            (res,) = json.loads(r.read())["results"]
        assert res["model_version"] == "round-0"
        assert res["result"][0]["value"]["choices"][0] in ("red", "green", "blue")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_export_every_format_without_training(tmp_path, image_folder, session_factory, capsys):
    import csv
    import json
    import zipfile  # noqa: F401

    from skpeal.labeling import LabelingSession

    from .conftest import CLASSES

    folder, truth = image_folder
    s = session_factory().prepare()
    s.simulate(lambda i, p: truth[p], 1)
    n_rounds = len(s.store.rounds())
    s.close()
    project = s.project
    # reopening remembers the backbone: no estimator= gives the project's, not ViT-B-32
    again = LabelingSession(project)
    assert again.estimator.model == "skpeal-tiny" and again.batch_size == 5
    again.close()
    from skpeal import CLIPAdapterClassifier

    with pytest.raises(ValueError, match="another model: model='skpeal-tiny'"):
        LabelingSession(project, estimator=CLIPAdapterClassifier(model="ViT-B-32"))
    with pytest.raises(ValueError, match="batch_size=5"):
        LabelingSession(project, batch_size=7)
    for fmt, out in (("csv", "l.csv"), ("folders", "out"), ("adapter", "a.safetensors"),
                     ("label-studio", "ls.json")):
        assert main(["export", str(project), "--format", fmt, "--out", str(tmp_path / out)]) == 0
        assert "written to" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert len(rows) == 5 and all(r["label"] == truth[r["path"]] for r in rows)
    copied = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert len(copied) == 5 and {p.parent.name for p in (tmp_path / "out").rglob("*.png")} <= set(
        CLASSES)
    tasks = json.load(open(tmp_path / "ls.json"))
    assert len(tasks) == 45
    est = CLIPAdapterClassifier(model="skpeal-tiny", pretrained=None, n_ctx=4).load_adapter(
        tmp_path / "a.safetensors")
    assert list(est.classes_) == sorted(CLASSES)
    check = LabelingSession(project)
    assert len(check.store.rounds()) == n_rounds  # nothing was trained by the exports
    check.close()
    # the default output goes into the project folder
    assert main(["export", str(project), "--format", "csv"]) == 0
    assert (project / "labels.csv").exists()


def test_export_of_a_folder_that_is_no_project(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "csv"]) == 2
    assert "is not a labelling project" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path), "--format", "xml"])


def test_label_ray_address_is_passed_and_a_dead_one_refused_before_anything_is_made(
        image_folder, capsys):
    import socket

    assert _parser().parse_args(["label", "photos"]).ray is None
    assert _parser().parse_args(["label", "photos", "--ray", "auto"]).ray == "auto"
    folder, _ = image_folder
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["label", str(folder), "--model", "skpeal-tiny", "--classes", "a", "b",
                 "--port", "0", "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in err[0], err
    assert not (folder / ".skpeal").exists()  # nothing was created


def test_label_session_refuses_a_ray_address_that_is_not_a_string(tmp_path, image_folder):
    from skpeal.labeling import LabelingSession

    from .conftest import tiny_estimator

    folder, _ = image_folder
    with pytest.raises(ValueError, match="ray must be an address string"):
        LabelingSession(tmp_path / "p", images=folder, classes=["a", "b"],
                        estimator=tiny_estimator(), ray=2)
    assert not (tmp_path / "p").exists()


def test_a_project_reopened_with_other_settings_stops_before_serving(tmp_path, capsys,
                                                                    image_folder):
    """The session's error, before the page serves the pending batch (no model loaded)."""
    from skpeal.labeling._project import start_project_without_model

    from .conftest import CLASSES

    folder, _ = image_folder
    start_project_without_model(tmp_path / "p", folder, CLASSES, {"batch_size": 5})
    for flags, match in [(["--init", "zero-shot"], "is a project with init='random'"),
                         (["--batch-size", "7"], "is a project with batch_size=5")]:
        assert main(["label", str(folder), "--project", str(tmp_path / "p"), "--port", "0",
                     *flags]) == 2
        out = capsys.readouterr()
        err = out.err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
        assert "open http" not in out.out  # never served
