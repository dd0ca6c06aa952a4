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
* answers per hour of the scripted person, and the time to the first batch;
* measured inside the server: each ``POST /api/pick`` from the moment the app receives
  it to its last byte sent (so the rest of keypress-to-saved is the browser, the socket
  and the server's wait to be scheduled), and each refit's duration (the server runs
  under ``benchmarks/label_page_server.py``, which adds these timers);
* measured in the page: each pick request from ``fetch`` to its reply's body (and its
  phases, from the browser's resource timing: waiting to be sent, sent to the reply's
  first byte, first to last byte), and how long a batch's number keys take to reach the
  page (Playwright sends one at a time);
* with ``--timeline``: the server's events (see ``label_page_server.py``: encoding end,
  refits, picks ahead, picks made in a request, batches served) beside each ``Enter``
  and each batch on screen, in seconds from the server's start.

``--server V1 V2 ...`` runs the whole benchmark once per server variant and prints the
runs side by side; a variant is ``default`` or comma-separated settings:
``switch=SECONDS`` (:func:`sys.setswitchinterval` in the server), ``threads=N``
(:func:`torch.set_num_threads` in the server), ``refit=off`` (every refit returns at once
without training: the floor, nothing runs behind the person), ``code=PATH`` (the server
and page of another checkout, e.g. ``code=../main``: before and after in one run),
``ahead=off`` (no batch picked ahead while the person answers), ``nagle=on`` (the
server's connections keep Nagle's algorithm, as before 2026-12-06).

``--keys page`` fires a batch's number keys inside the page, all in one go (they reach it
within a millisecond): the page and the server alone, without Playwright, which sends one
key at a time and waits for the browser to take each (``--keys playwright``, the default).

Usage::

    python benchmarks/bench_label_page.py --pool 300 --batches 5
    python benchmarks/bench_label_page.py --after-encoded --server default switch=0.0005
    python benchmarks/bench_label_page.py --after-encoded --keys page --server code=../main default

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
from benchmarks.label_page_server import parse_variant  # noqa: E402

CLASSES = ["plain", "local defect", "global defect"]

# In the page: the round trip of every pick request as the browser sees it (fetch to
# reply) and the time of every number key the page receives.
PAGE_TIMER = """
performance.setResourceTimingBufferSize(100000);
window.skpealBench = {fetches: [], keys: []};
const fetch0 = window.fetch;
window.fetch = async (...a) => {
  const t0 = performance.now();
  const r = await fetch0(...a);
  if (String(a[0]).includes("api/pick")) {
    await r.clone().text();
    window.skpealBench.fetches.push(performance.now() - t0);
  }
  return r;
};
document.addEventListener("keydown", (e) => {
  if (/^[0-9]$/.test(e.key)) window.skpealBench.keys.push(performance.now());
}, true);
"""

# Each pick request's phases as the browser's resource timing has them: waiting to be
# sent, request sent to the reply's first byte, first to last byte.
PICK_PHASES = """performance.getEntriesByType("resource").filter(
  (e) => e.name.includes("api/pick")).map((e) => [e.requestStart - e.startTime,
  e.responseStart - e.requestStart, e.responseEnd - e.responseStart])"""

# --keys page: every number key of a batch, fired inside the page in one go.
FIRE_KEYS = """keys => { for (const key of keys)
  document.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true})); }"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(args, variant):
    """One server, one browser, ``args.batches`` batches; returns the measured figures."""
    from playwright.sync_api import sync_playwright

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, OtherCPU() as other:
        images = Path(tmp) / "images"
        images.mkdir()
        write_tiles(images, args.pool)
        times = Path(tmp) / "times.txt"
        env = {**os.environ, "PYTHONPATH": os.fspath(ROOT), "HF_HUB_OFFLINE": "1",
               "SKPEAL_BENCH_TIMES": os.fspath(times)}
        t0, wall0 = time.perf_counter(), time.time()
        marks = []  # (wall time, what) of the scripted person
        proc = subprocess.Popen(
            [sys.executable, os.fspath(ROOT / "benchmarks" / "label_page_server.py"), variant,
             "label", os.fspath(images), "--classes", *CLASSES, "--project",
             os.fspath(Path(tmp) / "project"), "--port", str(free_port()), "--batch-size",
             str(args.batch_size), "--model", args.model],
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
                page.add_init_script(PAGE_TIMER)
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
                    keys = [str(rng.integers(1, len(CLASSES) + 1)) for _ in ids]
                    if args.keys == "page":
                        page.evaluate(FIRE_KEYS, keys)
                    for key in keys if args.keys == "playwright" else []:
                        page.keyboard.press(key)
                        time.sleep(args.key_interval)
                    page.wait_for_function(
                        f"document.querySelectorAll('.card .state.saved').length == {len(ids)}")
                    n_answers += len(ids)
                    t_enter = time.perf_counter()
                    marks.append((time.time(), "ENTER"))
                    page.keyboard.press("Enter")
                    page.wait_for_function(
                        "([old, n]) => { const c = [...document.querySelectorAll('.card')]; "
                        "return c.length == n && c.every(e => !old.includes(e.dataset.imageId)"
                        "); }", arg=[ids, args.batch_size], timeout=3_600_000)
                    waits.append(time.perf_counter() - t_enter)
                    marks.append((time.time(), f"ON SCREEN (waited {waits[-1]:.2f} s)"))
                total = time.perf_counter() - t_start
                saves = np.array(page.evaluate("window.skpealSaveTimes"))
                bench = page.evaluate("window.skpealBench")
                phases = np.array(page.evaluate(PICK_PHASES)).reshape(-1, 3)
                browser.close()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        lines = [line.split(maxsplit=1) for line in times.read_text().splitlines()]
    events = [(float(t), what) for k, v in lines if k == "event"
              for t, what in [v.split(maxsplit=1)]]
    timeline = [(t - wall0, what) for t, what in sorted(events + marks)]
    return {"timeline": timeline, "variant": variant, "load": (load0, os.getloadavg()[0]),
            "other": other.share,
            "first": first, "encoded": encoded, "saves": saves, "waits": np.array(waits),
            "per_hour": 3600 * n_answers / total, "fetches": np.array(bench["fetches"]),
            "phases": phases,
            # from each batch's first number key to its last
            "key_spans": np.array([b[-1] - b[0] for b in np.array_split(
                np.array(bench["keys"]), args.batches)]),
            "server_pick": np.array([float(v) for k, v in lines if k == "pick"]),
            "refits": np.array([float(v) for k, v in lines if k == "refit"])}


def _med(a, scale=1.0, fmt="{:.0f}"):
    return "-" if len(a) == 0 else fmt.format(scale * np.median(a))


def _p95(a):
    return "-" if len(a) == 0 else f"{np.percentile(a, 95):.0f}"


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
    p.add_argument("--timeline", action="store_true",
                   help="also print the server's events beside each Enter (seconds from "
                        "the server's start)")
    p.add_argument("--keys", choices=["playwright", "page"], default="playwright",
                   help="how the number keys reach the page: Playwright's key presses, one "
                        "at a time, or all of a batch fired in the page at once")
    p.add_argument("--server", nargs="+", default=["default"],
                   help="server variants, one run each, printed side by side: 'default' "
                        "or e.g. 'switch=0.0005', 'threads=1', 'refit=off', 'ahead=off', "
                        "'nagle=on', 'code=../main' (comma-separated)")
    args = p.parse_args(argv)
    if args.keys == "page" and args.key_interval:
        p.error("--keys page fires a batch's keys at once: no --key-interval")
    for v in args.server:  # a typo fails here, not after a first run
        parse_variant(v)
    runs = [run_once(args, v) for v in args.server]
    for r in runs if args.timeline else ():
        print(f"timeline of server {r['variant']} (s from its start; the page's status polls "
              "only from an Enter to its batch on screen):")
        enter = None
        for t, what in r["timeline"]:
            enter = t if what == "ENTER" else None if what.startswith("ON SCREEN") else enter
            if not what.startswith("status-end") or enter is not None:
                print(f"  {t:8.2f}  {what}")
    print(f"pool {args.pool}, {args.batches} batches of {args.batch_size}, model {args.model}; "
          f"keys {args.key_interval * 1000:.0f} ms apart ({args.keys}); {os.cpu_count()} CPUs")
    rows = [
        ("server", lambda r: r["variant"]),
        ("load average before/after", lambda r: "{:.1f}/{:.1f}".format(*r["load"])),
        ("CPU share of other processes", lambda r: f"{100 * r['other']:.0f}%"),
        ("first batch (s, server start incl.)", lambda r: f"{r['first']:.1f}"),
        ("every image encoded (s)",
         lambda r: "-" if r["encoded"] is None else f"{r['encoded']:.1f}"),
        ("keypress-to-saved median (ms)", lambda r: _med(r["saves"])),
        ("keypress-to-saved p95 (ms)", lambda r: _p95(r["saves"])),
        ("picks measured", lambda r: str(len(r["saves"]))),
        ("ten keys reach the page within, median (ms)", lambda r: _med(r["key_spans"])),
        ("pick requests in the browser, median (ms)", lambda r: _med(r["fetches"])),
        ("pick requests in the browser, p95 (ms)", lambda r: _p95(r["fetches"])),
        ("  waiting to be sent, median (ms)", lambda r: _med(r["phases"][:, 0])),
        ("  sent to first byte of the reply, median (ms)", lambda r: _med(r["phases"][:, 1])),
        ("  first to last byte of the reply, median (ms)", lambda r: _med(r["phases"][:, 2])),
        ("pick requests in the server, median (ms)",
         lambda r: _med(r["server_pick"], fmt="{:.1f}")),
        ("pick requests in the server, p95 (ms)", lambda r: _p95(r["server_pick"])),
        ("pick requests", lambda r: str(len(r["server_pick"]))),
        ("refits: median (s)", lambda r: _med(r["refits"], fmt="{:.2f}")),
        ("refits finished: each (s)",
         lambda r: " ".join(f"{t:.1f}" for t in r["refits"]) or "-"),
        ("wait after Enter: median (s)", lambda r: _med(r["waits"], fmt="{:.1f}")),
        ("wait after Enter: each (s)",
         lambda r: " ".join(f"{w:.1f}" for w in r["waits"])),
        ("answers per hour (scripted)", lambda r: f"{r['per_hour']:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, cell in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{cell(r):>14}" for r in runs))


if __name__ == "__main__":
    main()
