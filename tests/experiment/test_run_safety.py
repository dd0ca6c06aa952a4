"""A run's folder is its own: a second process is refused at every phase of the first
(``--overwrite`` or not), a resume over changed images is refused, and a run killed or
interrupted at random moments resumes to the uninterrupted results."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skpeal.experiment import ExperimentConfig, run_experiment

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
TIMING = ["fit_time", "query_time"]

HOLDER = textwrap.dedent('''
    import pathlib, sys, time
    from skpeal.experiment import ExperimentConfig, runner

    phase_file, out = pathlib.Path(sys.argv[1]), sys.argv[2]
    held = set()

    def hold(name):
        if name in held:
            return
        held.add(name)
        phase_file.write_text(name)
        go = phase_file.with_name(phase_file.name + "." + name)
        while not go.exists():
            time.sleep(0.02)

    def wrap(name, fn, before=True):
        def inner(*a, **k):
            if before:
                hold(name)
            r = fn(*a, **k)
            if not before:
                hold(name)
            return r
        return inner

    runner.load_data = wrap("loading data", runner.load_data)
    runner.make_loop = wrap("encoding", runner.make_loop)
    runner.atomic_write_text = wrap("between rounds", runner.atomic_write_text, before=False)
    runner.write_report = wrap("writing the report", runner.write_report)
    config = ExperimentConfig(data="digits", model="skpeal-tiny", pretrained=None,
                              strategies=["random"], rounds=2, seeds=[0], pool_size=100,
                              test_size=50, estimator_params=dict(n_ctx=4, max_epochs=1))
    runner.run_experiment(config, out, progress=False)
    phase_file.write_text("done")
''')


def _second(out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "skpeal.cli", "run", "--data", "digits", "--model",
         "skpeal-tiny", "--pretrained", "none", "--strategies", "random", "--rounds", "2",
         "--seeds", "0", "--pool-size", "100", "--test-size", "50", "--n-ctx", "4",
         "--out", str(out), "--quiet", *extra],
        env=ENV, capture_output=True, text=True, timeout=300)


def test_a_second_process_is_refused_at_every_phase_of_the_first(tmp_path):
    out, phase = tmp_path / "run", tmp_path / "phase"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    first = subprocess.Popen([sys.executable, str(script), str(phase), str(out)], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for name in ("loading data", "encoding", "between rounds", "writing the report"):
            deadline = time.time() + 300
            while time.time() < deadline and first.poll() is None:
                if phase.exists() and phase.read_text() == name:
                    break
                time.sleep(0.05)
            assert first.poll() is None, first.stdout.read()
            for extra in (("--epochs", "3", "--overwrite"), ()):
                r = _second(out, *extra)
                assert r.returncode == 2, (name, extra, r.stdout, r.stderr)
                assert "in use by another skpeal run" in r.stderr, (name, r.stderr)
            seen.append(name)
            (tmp_path / f"phase.{name}").write_text("go")
        assert first.wait(timeout=300) == 0, first.stdout.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert seen == ["loading data", "encoding", "between rounds", "writing the report"]
    # the first run's configuration and results only
    assert json.loads((out / "config.json").read_text())["estimator_params"]["max_epochs"] == 1
    assert len(pd.read_csv(out / "results.csv")) == 2
    # once the first has finished, the same folder is free again
    assert _second(out, "--epochs", "3", "--overwrite").returncode == 0


def _folder(root, n_per_class=12, start=0):
    rng = np.random.default_rng(start)
    for c, name in enumerate(("red", "green", "blue")):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n_per_class):
            a = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
            a[..., c] += 170
            Image.fromarray(a).save(d / f"{i:03d}.png")


def _folder_config(data, rounds):
    return ExperimentConfig(data=str(data), model="skpeal-tiny", pretrained=None,
                            strategies=["random"], rounds=rounds, seeds=[0], budget=3,
                            estimator_params=dict(n_ctx=4, max_epochs=1))


def test_a_resume_over_changed_images_is_refused_with_the_way_out(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    _folder(data)
    run_experiment(_folder_config(data, 2), out, progress=False)
    fp = json.loads((out / "pool.json").read_text())
    assert fp["n_pool"] + fp["n_test"] == 36
    for i in range(3):  # three images added to one class folder
        Image.new("RGB", (16, 16), (200, 0, 0)).save(data / "red" / f"new{i}.png")
    with pytest.raises(ValueError, match="changed since it started") as err:
        run_experiment(_folder_config(data, 2), out, progress=False)
    assert "--overwrite" in str(err.value) and "Put the data back" in str(err.value)
    assert len(json.loads((out / "state" / "random__seed0.json").read_text())["rounds"]) == 2
    # a replaced image (same name, other content and size) is a change too
    for i in range(3):
        os.unlink(data / "red" / f"new{i}.png")
    Image.new("RGB", (40, 40), (9, 9, 9)).save(data / "red" / "000.png")
    with pytest.raises(ValueError, match="changed since it started"):
        run_experiment(_folder_config(data, 2), out, progress=False)
    # --overwrite starts afresh on the new images
    df = run_experiment(_folder_config(data, 2), out, overwrite=True, progress=False)
    assert list(df["round"]) == [0, 1]
    assert json.loads((out / "pool.json").read_text())["sha256"] != fp["sha256"]
    # unchanged images: the finished run is simply read back
    run_experiment(_folder_config(data, 2), out, progress=False)


def _cli(out):
    return [sys.executable, "-m", "skpeal.cli", "run", "--data", "digits", "--model",
            "skpeal-tiny", "--pretrained", "none", "--strategies", "random",
            "calibrated-entropy", "--rounds", "4", "--seeds", "0", "1", "--pool-size", "200",
            "--test-size", "80", "--epochs", "2", "--n-ctx", "4", "--out", str(out),
            "--quiet"]


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_results(tmp_path):
    full = tmp_path / "full"
    subprocess.run(_cli(full), check=True, env=ENV, capture_output=True, timeout=600)
    expected = pd.read_csv(full / "results.csv").drop(columns=TIMING)
    t0 = time.monotonic()  # a second, warm run (caches filled) gives the span to kill in
    subprocess.run(_cli(tmp_path / "again"), check=True, env=ENV, capture_output=True,
                   timeout=600)
    t_full = time.monotonic() - t0
    pd.testing.assert_frame_equal(
        expected, pd.read_csv(tmp_path / "again" / "results.csv").drop(columns=TIMING))
    rng = random.Random(0)
    for trial, sig in enumerate((signal.SIGKILL, signal.SIGINT)):
        out = tmp_path / f"killed{trial}"
        kills, span = 0, t_full
        while True:  # kill it again and again at random moments until it finishes
            proc = subprocess.Popen(_cli(out), env=ENV, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            # at most 3 kills, each at a random moment of a run's span
            wait = rng.uniform(0.1, 0.8) * span if kills < 3 else 600
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, sig)
                kills += 1
                proc.communicate(timeout=120)  # (Ctrl+C in a round exits 130; during
                continue  # Python's imports it is a KeyboardInterrupt: either way, resume)
            assert proc.returncode == 0, proc.stderr.read()
            if kills == 0 and span > 0.05 * t_full:  # it ran faster than the warm run
                shutil.rmtree(out)  # (a loaded machine): start afresh, kill it sooner
                span /= 2
                continue
            break
        assert kills >= 1
        got = pd.read_csv(out / "results.csv").drop(columns=TIMING)
        pd.testing.assert_frame_equal(expected, got)
        assert json.loads((full / "selections.json").read_text()) == json.loads(
            (out / "selections.json").read_text())
