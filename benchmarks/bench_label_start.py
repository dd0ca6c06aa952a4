"""Benchmark: how long ``skpeal label`` takes to show a batch, new and restarted.

A pool of ``--pool`` photo tiles (crops of scikit-learn's two sample photos, 96x96 JPEG),
three classes, the offline backbone ``effnet-lite0-minilm`` (not a CLIP model) with the
``skpeal label`` defaults (prompt adapter, n_ctx 4). Every time is counted from the start
of a new process (``python -m skpeal.cli label ...``), as a person starting the command
waits: the imports (torch, open_clip, the web stack) included. Printed:

* ``new project``: ``skpeal label`` on a new project folder: the page (the first answer
  of ``/api/batch``), the first ``/api/batch`` that gives images (and the CPU time the
  process used until then, every thread: less sensitive to other processes than the
  wall time), and every image encoded (``/api/status``: ready, phase ``ready``, not
  busy; not with ``--first-only``);
* ``skpeal label restart``: ``skpeal label`` started again on that project: the first
  ``/api/batch`` that gives the pending batch (served from the store while the model
  loads), and the model ready;
* ``restart (LabelingSession)``: a new process (``python -c``) opening the same project
  through :class:`~skpeal.labeling.LabelingSession`: from the start of the process, and
  from the end of its imports, to the first batch. The image features are read from the
  project folder (``<project>/features``), not encoded again.

``--init zero-shot random pixels`` times a new project with each first batch, one after the
other: ``random`` and ``pixels`` are picked and shown before torch and the model are loaded.

``--code NAME=PATH`` times the code of another checkout (e.g. an older commit unpacked
with ``git archive``) on the same pool, one after the other: ``--code before=/tmp/old
--code after=.``.

Usage::

    python benchmarks/bench_label_start.py --pool 1000
    python benchmarks/bench_label_start.py --pool 1000 10000 100000 --distinct 3000 --first-only
    python benchmarks/bench_label_start.py --pool 1000 10000 100000 --distinct 3000 \
        --first-only --init zero-shot random pixels

Prints the machine and one line per size (and code), with the load average before and
after it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

CLASSES = ["plain", "local defect", "global defect"]

RESTART = """
import time; t0 = time.perf_counter()
import os, sys, json
sys.path.insert(0, {root!r})
from skpeal import CLIPAdapterClassifier
from skpeal.labeling import LabelingSession
t1 = time.perf_counter()
s = LabelingSession({project!r}, estimator=CLIPAdapterClassifier(
    model="effnet-lite0-minilm", max_epochs=10, n_ctx=4, optimizer="adamw", lr=0.01))
s.prepare()
batch = s.next_batch(client="bench")
t2 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "first_batch": t2 - t1, "n": len(batch)}}))
"""


def label_server(images, project, code=ROOT, until_ready=True, timeout=1800, threads=None,
                 init=None):
    """Start ``skpeal label`` (a new process, the code under ``code``, ``threads`` torch
    threads: ``OMP_NUM_THREADS``); seconds from its start to the page, to the first batch
    with images and (``until_ready``) to the model ready with every image scored (None:
    not reached); ``init``: ``--init`` of a new project."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.fspath(code)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "skpeal.cli", "label", os.fspath(images), "--project",
           os.fspath(project), "--port", str(port)]
    if not (Path(project) / "labels.sqlite").exists():
        cmd += ["--classes", *CLASSES] + (["--init", init] if init else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=tempfile.gettempdir())

    def get(path):
        with urllib.request.urlopen(base + path, timeout=60) as r:
            return json.loads(r.read())

    page = first = ready = cpu = None
    try:
        while time.perf_counter() - t0 < timeout and proc.poll() is None:
            try:
                if first is None:
                    items = get("/api/batch?client=bench")["items"]
                    page = page or time.perf_counter() - t0
                    if items:
                        first = time.perf_counter() - t0
                        cpu = cpu_seconds(proc.pid)
                        if not until_ready:
                            break
                else:
                    st = get("/api/status")
                    if st["ready"] and not st["busy"] and st["state"]["phase"] == "ready":
                        ready = time.perf_counter() - t0
                        break
            except OSError:  # not listening yet
                pass
            time.sleep(0.1 if first is None else 0.25)  # a page asks every 0.5 s
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    if first is None:
        raise RuntimeError(f"skpeal label gave no batch: {err[-2000:]}")
    return page, first, ready, cpu


def cpu_seconds(pid):
    """CPU seconds (user + system, every thread) process ``pid`` used so far (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_tiles(folder, n, seed=0, distinct=None):
    """``n`` JPEG tiles; beyond ``distinct`` of them, hard links to the first ones (distinct
    paths, so distinct images for skpeal, at the disk cost of ``distinct`` files)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    n_files = n if distinct is None else min(n, distinct)
    for i in range(n_files):
        src = photos[i % 2]
        y, x = rng.integers(0, src.shape[0] - 96), rng.integers(0, src.shape[1] - 96)
        Image.fromarray(src[y:y + 96, x:x + 96]).save(Path(folder) / f"t{i:06d}.jpg",
                                                      quality=90)
    for i in range(n_files, n):
        os.link(Path(folder) / f"t{i % n_files:06d}.jpg", Path(folder) / f"t{i:06d}.jpg")


def _secs(t):
    return "  -  " if t is None else f"{t:5.1f}"


def _code(value):
    name, sep, path = value.partition("=")
    if not sep or not name or not Path(path, "skpeal").is_dir():
        raise argparse.ArgumentTypeError(f"--code NAME=PATH, PATH a checkout with skpeal/: "
                                         f"got {value!r}")
    return name, Path(path).resolve()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=int, nargs="+", default=[1000])
    p.add_argument("--distinct", type=int, default=None,
                   help="write this many tiles and hard-link the rest (e.g. 3000 for a "
                        "pool of 100000)")
    p.add_argument("--first-only", action="store_true",
                   help="time the page and the first batch only (not every image encoded, "
                        "nor the restarts)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads of skpeal label (OMP_NUM_THREADS; default: torch's "
                        "own, one per core)")
    p.add_argument("--init", nargs="+", default=[None],
                   choices=["zero-shot", "random", "pixels"],
                   help="--init of the new project: each given is timed, one after the "
                        "other (default: skpeal label's default)")
    p.add_argument("--code", type=_code, action="append", default=None, metavar="NAME=PATH",
                   help="time the skpeal of this checkout (repeatable; default: this one)")
    args = p.parse_args(argv)
    codes = args.code or [("", ROOT)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"torch threads: {args.threads or 'one per core'}; {date()}", flush=True)
    for n in args.pool:
        with tempfile.TemporaryDirectory() as tmp:
            images = Path(tmp) / "images"
            images.mkdir()
            t_write = time.perf_counter()
            write_tiles(images, n, distinct=args.distinct)
            t_write = time.perf_counter() - t_write
            print(f"pool {n:>7,}: written in {t_write:.0f} s", flush=True)
            for (name, code), init in [(c, i) for c in codes for i in args.init]:
                tag = f"pool {n:>7,}" + (f" [{name}]" if name else "") + (
                    f" --init {init}" if init else "")
                project = Path(tmp) / f"project-{name}"
                load0 = os.getloadavg()[0]
                page, first, ready, cpu = label_server(images, project, code,
                                                       until_ready=not args.first_only,
                                                       threads=args.threads, init=init)
                print(f"{tag}: new project: page {_secs(page)} s, first batch {_secs(first)} s"
                      f" ({_secs(cpu)} s of CPU), all encoded {_secs(ready)} s from the process "
                      f"start | load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after",
                      flush=True)
                if args.first_only:
                    shutil.rmtree(project, ignore_errors=True)
                    continue
                load0 = os.getloadavg()[0]
                _, served, ready, _ = label_server(images, project, code, threads=args.threads)
                print(f"{tag}: skpeal label restart: first batch served {_secs(served)} s, "
                      f"model ready {_secs(ready)} s from the process start | load average "
                      f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after", flush=True)
                load0 = os.getloadavg()[0]
                out = subprocess.run([sys.executable, "-c", RESTART.format(
                    root=os.fspath(code), project=os.fspath(project))], capture_output=True,
                    text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(
                        {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})})
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{tag}: restart (LabelingSession): first batch "
                      f"{r['imports'] + r['first_batch']:5.1f} s from the process start "
                      f"({r['first_batch']:.1f} s after the imports) | load average "
                      f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after", flush=True)
                shutil.rmtree(project, ignore_errors=True)


def date():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


if __name__ == "__main__":
    main()
