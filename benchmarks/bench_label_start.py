"""Benchmark: how long ``skpeal label`` takes to show a batch, new and restarted.

A pool of ``--pool`` photo tiles (crops of scikit-learn's two sample photos, 96x96 JPEG),
three classes, the offline backbone ``effnet-lite0-minilm`` with the ``skpeal label``
defaults (prompt adapter, n_ctx 4). Printed:

* ``new project``: from opening the session to its first batch (the pool is encoded
  first), and the time at which every image is encoded;
* ``restart``: a new process (``python -c``) opening the same project folder: from the
  start of the process, and from the end of its imports, to the first batch. The image
  features are read from the project folder (``<project>/features``), not encoded again.
* ``skpeal label restart``: ``skpeal label`` started again on the project (a new
  process): from its start to the first ``/api/batch`` that gives the pending batch (served
  from the store while the model loads), and to the model ready (``/api/status`` ready,
  no longer loading or busy).

Usage::

    python benchmarks/bench_label_start.py --pool 1000
    python benchmarks/bench_label_start.py --pool 10000
    python benchmarks/bench_label_start.py --pool 100000 --distinct 3000 --first-only

Prints the machine, the CPU share other processes used meanwhile, and one line per size.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_label_wait import OtherCPU  # noqa: E402

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


def restart_server(project, images):
    """Start ``skpeal label`` on ``project``; seconds to the first batch and to the model."""
    import json
    import signal
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.fspath(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "skpeal.cli", "label", os.fspath(images),
                             "--project", os.fspath(project), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def get(path):
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return json.loads(r.read())

    try:
        first = model = None
        while time.perf_counter() - t0 < 600 and proc.poll() is None:
            try:
                if first is None:
                    if get("/api/batch?client=bench")["items"]:
                        first = time.perf_counter() - t0
                else:
                    st = get("/api/status")
                    if st["ready"] and not st["busy"] and st["state"]["phase"] != "loading":
                        model = time.perf_counter() - t0
                        break
            except OSError:  # not listening yet
                pass
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return first, model


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=int, nargs="+", default=[1000])
    p.add_argument("--distinct", type=int, default=None,
                   help="write this many tiles and hard-link the rest (e.g. 3000 for a "
                        "pool of 100000)")
    p.add_argument("--first-only", action="store_true",
                   help="time the first batch only, and exit without waiting for the "
                        "rest of the pool to be encoded (nor the restart)")
    args = p.parse_args(argv)
    from skpeal import CLIPAdapterClassifier
    from skpeal.labeling import LabelingSession

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    for n in args.pool:
        with tempfile.TemporaryDirectory() as tmp:
            images = Path(tmp) / "images"
            images.mkdir()
            t_write = time.perf_counter()
            write_tiles(images, n, distinct=args.distinct)
            t_write = time.perf_counter() - t_write
            project = Path(tmp) / "project"
            with OtherCPU() as other:
                t0 = time.perf_counter()
                s = LabelingSession(project, images=images, classes=CLASSES,
                                    estimator=CLIPAdapterClassifier(
                                        model="effnet-lite0-minilm", max_epochs=10, n_ctx=4,
                                        optimizer="adamw", lr=0.01))
                worker = threading.Thread(target=s.prepare)  # as the server runs it
                worker.start()
                while not s.ready and worker.is_alive():
                    time.sleep(0.01)
                s.next_batch(client="bench")  # shown while the rest is still encoded
                first = time.perf_counter() - t0
                if args.first_only:
                    print(f"pool {n:>7,} ({t_write:.0f} s to write it): new project: first "
                          f"batch {first:6.1f} s; load average {os.getloadavg()[0]:.1f}",
                          flush=True)
                    shutil.rmtree(tmp, ignore_errors=True)
                    os._exit(0)  # the encoding thread would run on for the whole pool
                worker.join()
                encoded = time.perf_counter() - t0
                s.close()
                out = subprocess.run([sys.executable, "-c", RESTART.format(
                    root=os.fspath(ROOT), project=os.fspath(project))], capture_output=True,
                    text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                import json

                r = json.loads(out.stdout.strip().splitlines()[-1])
                load0 = os.getloadavg()[0]
                served, model = restart_server(project, images)
            print(f"pool {n:>7,}: skpeal label restart: first batch served {served:5.1f} s "
                  f"from process start, model ready {model:5.1f} s | load average "
                  f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after")
            print(f"pool {n:>7,}: new project: first batch {first:6.1f} s, all encoded "
                  f"{encoded:6.1f} s | restart: first batch {r['imports'] + r['first_batch']:5.1f}"
                  f" s from process start ({r['first_batch']:.1f} s after imports) | other "
                  f"processes used {100 * other.share:.0f}% of the CPU")


if __name__ == "__main__":
    main()
