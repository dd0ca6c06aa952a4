"""The page in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

The server is ``skpeal label`` itself, started as a subprocess on a free localhost port with
the tiny model; one test kills it with SIGKILL mid-session and restarts it.
"""

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists(
    "/usr/bin/chromium") else None)
pytest.importorskip("fastapi", reason="the web app needs the 'label' extra (fastapi)")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the 'browser' extra (playwright)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")

ROOT = Path(__file__).resolve().parents[2]
#: Where the page's screenshot goes: the docs' copy is refreshed with
#: ``SKPEAL_SCREENSHOT_DIR=docs/_static pytest tests/labeling/test_browser.py``
#: (otherwise the test's temporary folder, so a test run changes no tracked file).
SCREENSHOT_DIR = os.environ.get("SKPEAL_SCREENSHOT_DIR")


def fashion_pngs(folder, n=120):
    """Fashion-MNIST images as PNG files (coloured squares when the package is absent)."""
    try:
        from skpeal.datasets import load_fashion_mnist

        data = load_fashion_mnist(n_train=n, n_test=10, random_state=0)
        images, names = data.X_train, list(data.classnames)
        labels = [names[i] for i in data.y_train]
    except (FileNotFoundError, ValueError, OSError):
        rng = np.random.default_rng(0)
        names = ["red", "green", "blue"]
        images, labels = [], []
        for i in range(n):
            a = rng.integers(0, 80, size=(28, 28, 3), dtype=np.uint8)
            a[..., i % 3] += 170
            images.append(a)
            labels.append(names[i % 3])
    for i, img in enumerate(images):
        Image.fromarray(np.asarray(img)).save(Path(folder) / f"item{i:04d}.png")
    return names


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``skpeal label`` in a subprocess."""

    def __init__(self, images, project, classes, port, batch_size=5):
        env = {**os.environ, "PYTHONPATH": os.fspath(ROOT), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skpeal.cli", "label", os.fspath(images), "--classes",
             *classes, "--project", os.fspath(project), "--port", str(port),
             "--batch-size", str(batch_size), "--model", "skpeal-tiny", "--epochs", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = None
        lines = []
        t0 = time.time()
        while time.time() - t0 < 120:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"open (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        if self.url is None:
            self.kill()
            raise AssertionError("the server did not start:\n" + "".join(lines))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture
def setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    classes = fashion_pngs(images)
    return images, tmp_path / "project", classes


def card_ids(page):
    ids = page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.imageId)")
    return [int(x) for x in ids]


def wait_batch(page, not_ids=(), n=5, timeout=60000):
    page.wait_for_function(
        "([n, old]) => { const c = [...document.querySelectorAll('.card')]; return c.length == n"
        " && c.every(e => !old.includes(Number(e.dataset.imageId))); }",
        arg=[n, list(not_ids)], timeout=timeout)
    return card_ids(page)


def label_with_keys(page, keys):
    for k in keys:
        page.keyboard.press(k)


def test_label_a_batch_with_the_keyboard_refit_and_reload(browser, setup, tmp_path):
    images, project, classes = setup
    shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    server = Server(images, project, classes, free_port())
    try:
        page = browser.new_page(viewport={"width": 1320, "height": 900})
        page.goto(server.url)
        first = wait_batch(page)
        # the suggestion is pre-selected, with its confidence
        sug = page.inner_text(".card .suggest")
        assert re.match(r"model: .+ \(\d+%\)", sug)
        assert page.eval_on_selector(".card", "e => e.dataset.label") == sug.split(": ")[1].rsplit(
            " (", 1)[0]
        label_with_keys(page, ["1", "2", "3", "s", "1"])
        labels = page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.label)")
        assert labels == [classes[0], classes[1], classes[2], "", classes[0]]
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Saved 5 answers")
        second = wait_batch(page, not_ids=first)
        page.wait_for_function("document.getElementById('model-info').textContent"
                               ".includes('round 1')")
        assert page.locator("#curve circle").count() == 2  # rounds 0 and 1
        # the stopping criteria's suggestion: a line on the page, nothing stops
        page.wait_for_function("document.getElementById('stop-suggestion').textContent"
                               ".startsWith('Suggestion: ')")
        assert "the model estimates its accuracy at" in page.text_content("#stop-suggestion")
        assert "kappa_average" not in page.text_content("#stop-suggestion")  # plain words
        page.wait_for_selector("#busy", state="hidden")  # no progress banner when idle
        label_with_keys(page, ["4", "5"])
        page.screenshot(path=os.fspath(shots / "label_page.png"))
        assert (shots / "label_page.png").stat().st_size > 10000
        page.reload()
        wait_batch(page)
        assert card_ids(page) == second  # same batch after a reload
        texts = "e => e.map(x => x.textContent)"
        counts = dict(zip(page.eval_on_selector_all("#counts td.name", texts),
                          map(int, page.eval_on_selector_all("#counts td.n", texts))))
        assert counts[classes[0]] == 2 and counts[classes[1]] == 1 and counts[classes[2]] == 1
        assert "4 labelled, 1 skipped" in page.inner_text("#progress-text")
        # undo with u: the last answer comes back into the batch
        page.keyboard.press("u")
        page.wait_for_selector("text=Undone")
        page.wait_for_function(f"document.querySelector('.card').dataset.imageId == '{first[-1]}'")
        csv_text = page.evaluate("fetch('api/export.csv').then(r => r.text())")
        assert csv_text.splitlines()[0].startswith("image_id,path,file,label")
        assert len(csv_text.splitlines()) == 1 + 3
    finally:
        server.kill()


def test_sigkill_mid_session_loses_no_acknowledged_label(browser, setup):
    images, project, classes = setup
    port = free_port()
    server = Server(images, project, classes, port)
    acked = {}
    try:
        page = browser.new_page()
        page.goto(server.url)
        shown = wait_batch(page)
        for rnd in range(2):
            keys = [str((k + rnd) % len(classes) + 1) for k in range(5)]
            label_with_keys(page, keys)
            chosen = page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.label)")
            page.keyboard.press("Enter")
            page.wait_for_selector("#message:has-text('Saved 5 answers')")
            acked.update(zip(shown, chosen))  # the server answered: acknowledged
            page.evaluate("document.getElementById('message').textContent = ''")
            if rnd == 0:
                shown = wait_batch(page, not_ids=shown)
        server.kill()  # SIGKILL right after the second batch was acknowledged (mid-refit)
        assert server.proc.returncode == -signal.SIGKILL
        server = Server(images, project, classes, port)
        page.reload()
        third = wait_batch(page, not_ids=list(acked))
        db = sqlite3.connect(project / "labels.sqlite")
        rows = db.execute("SELECT image_id, label FROM labels WHERE kind = 'label'").fetchall()
        for image_id, label in acked.items():
            assert rows.count((image_id, label)) == 1, (image_id, label)
        assert len(rows) == len(acked) == 10
        # the refit the kill interrupted runs again after the restart: a model of 10 labels
        page.wait_for_function("document.getElementById('model-info').textContent"
                               ".includes('round 2')", timeout=60000)
        # pending batch survives a second kill: the same images come back
        server.kill()
        server = Server(images, project, classes, port)
        page.reload()
        assert wait_batch(page) == third
        assert "10 labelled" in page.inner_text("#progress-text")
    finally:
        server.kill()
