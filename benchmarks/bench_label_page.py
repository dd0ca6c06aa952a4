"""Benchmark: is the labelling page ever the bottleneck? A scripted person as fast as can be.

Starts ``skpeal label`` (a subprocess on a free localhost port) over ``--pool`` photo tiles
(crops of scikit-learn's two sample photos) with ``--model`` (default the offline
backbone ``effnet-lite0-minilm``, which is not a CLIP model), opens the page in Debian's
chromium (Playwright), and answers ``--batches`` batches with the number keys as fast as
the page lets it (or ``--key-interval`` seconds apart): every key, then ``Enter`` once
every card says "saved". Printed:

* keypress-to-saved: from the key press to the server's commit of the pick, as the page
  measures it (``window.skpealSaveTimes``), median and 95th percentile;
* the wait after each ``Enter`` until the next batch is on screen (the refit runs in the
  background; 0 would mean the person never waits);
* answers per hour of the scripted person, and the time to the first batch.

Usage::

    python benchmarks/bench_label_page.py --pool 300 --batches 5

Needs the ``label``, ``browser`` and ``offline`` extras and Debian's chromium.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_label_start import write_tiles  # noqa: E402
from benchmarks.bench_label_wait import OtherCPU  # noqa: E402

CLASSES = ["plain", "local defect", "global defect"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", type=int, default=300)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--model", default="effnet-lite0-minilm")
    p.add_argument("--after-encoded", action="store_true",
                   help="start answering once every image is encoded (then every Enter "
                        "starts a refit behind the person)")
    p.add_argument("--key-interval", type=float, default=0.0,
                   help="seconds between two keys (0: as fast as the browser takes them)")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, OtherCPU() as other:
        images = Path(tmp) / "images"
        images.mkdir()
        write_tiles(images, args.pool)
        env = {**os.environ, "PYTHONPATH": os.fspath(ROOT), "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "skpeal.cli", "label", os.fspath(images), "--classes",
             *CLASSES, "--project", os.fspath(Path(tmp) / "project"), "--port",
             str(free_port()), "--batch-size", str(args.batch_size), "--model", args.model],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            url = None
            for line in proc.stdout:
                m = re.search(r"open (http://\S+)", line)
                if m:
                    url = m.group(1)
                    break
            if url is None:
                raise SystemExit("the server did not start")
            rng = np.random.default_rng(0)
            waits, n_answers = [], 0
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url)
                card = "document.querySelectorAll('.card').length == {n}"
                page.wait_for_function(card.format(n=args.batch_size), timeout=3_600_000)
                first = time.perf_counter() - t0
                encoded = None
                if args.after_encoded:
                    page.wait_for_function("status && status.ready && status.state.phase "
                                           "!== 'encoding' && !status.busy",
                                           timeout=3_600_000, polling=500)
                    encoded = time.perf_counter() - t0
                t_start = time.perf_counter()
                for _ in range(args.batches):
                    ids = page.eval_on_selector_all(".card", "e => e.map(x => x.dataset.imageId)")
                    for _ in ids:
                        page.keyboard.press(str(rng.integers(1, len(CLASSES) + 1)))
                        time.sleep(args.key_interval)
                    page.wait_for_function(
                        f"document.querySelectorAll('.card .state.saved').length == {len(ids)}")
                    n_answers += len(ids)
                    t_enter = time.perf_counter()
                    page.keyboard.press("Enter")
                    page.wait_for_function(
                        "([old, n]) => { const c = [...document.querySelectorAll('.card')]; "
                        "return c.length == n && c.every(e => !old.includes(e.dataset.imageId)"
                        "); }", arg=[ids, args.batch_size], timeout=3_600_000)
                    waits.append(time.perf_counter() - t_enter)
                total = time.perf_counter() - t_start
                saves = np.array(page.evaluate("window.skpealSaveTimes"))
                browser.close()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    print(f"pool {args.pool}, {args.batches} batches of {args.batch_size}, model {args.model}; "
          f"keys {args.key_interval * 1000:.0f} ms apart; other processes (the server "
          f"included) used {100 * other.share:.0f}% of the CPU; load average "
          f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
    print(f"first batch after {first:.1f} s (server start included)"
          + ("" if encoded is None else f"; every image encoded after {encoded:.1f} s, then "
             "the answers began"))
    print(f"keypress-to-saved: median {np.median(saves):.0f} ms, p95 "
          f"{np.percentile(saves, 95):.0f} ms over {len(saves)} picks")
    print("wait after Enter for the next batch: " + ", ".join(f"{w:.1f}" for w in waits)
          + f" s (median {np.median(waits):.1f} s)")
    print(f"answers per hour (scripted, as fast as the page allows): "
          f"{3600 * n_answers / total:.0f}")


if __name__ == "__main__":
    main()
