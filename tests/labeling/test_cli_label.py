"""``skpeal label``: arguments and one-line errors (the server itself: test_browser.py)."""

import pytest

from skpeal.cli import _parser, main


def test_label_arguments_and_defaults():
    args = _parser().parse_args(["label", "photos", "--classes", "cat", "dog"])
    assert args.command == "label" and args.images == "photos"
    assert args.classes == ["cat", "dog"] and args.host == "127.0.0.1" and args.port == 8000
    assert args.project is None and args.batch_size == 10


@pytest.mark.parametrize("extra, match", [
    ([], "a new project needs its class names"),
    (["--classes", "cat"], "at least two class names"),
    (["--classes", "cat", "cat"], "listed twice"),
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
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    pytest.importorskip("fastapi")
    folder, _ = image_folder

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

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
