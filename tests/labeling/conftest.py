"""Fixtures of the labelling tests: a folder of coloured PNG images and a tiny session."""

import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["red", "green", "blue"]
#: Debian's chromium, which the browser tests drive through Playwright (never a download).
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists(
    "/usr/bin/chromium") else None)
TINY_EST = dict(model="skpeal-tiny", pretrained=None, n_ctx=4, max_epochs=2, random_state=0)


def make_images(folder, n=45, seed=0):
    """``n`` 32x32 PNGs under ``folder`` (two sub-folders); returns {real path: class}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        c = i % len(CLASSES)
        a = rng.integers(0, 80, size=(32, 32, 3), dtype=np.uint8)
        a[..., c] += 170
        p = Path(folder) / f"part{i % 2}" / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(p)
        truth[os.path.realpath(p)] = CLASSES[c]
    return truth


@pytest.fixture
def image_folder(tmp_path):
    """(folder, truth) with 45 images of three colour classes."""
    folder = tmp_path / "images"
    return folder, make_images(folder)


def hold_encoding(monkeypatch, at, method="predict_proba_embed"):
    """Hold the model's ``method`` (the pool's encoding) at its ``at``-th call.

    Returns ``(calls, gate)``: the number of images of each call so far, and the event
    that lets the held call go on (``gate.set()``).
    """
    from skpeal import CLIPAdapterClassifier

    calls, gate = [], threading.Event()
    original = getattr(CLIPAdapterClassifier, method)

    def held(self, X):
        calls.append(len(X))
        if len(calls) == at:
            assert gate.wait(60)
        return original(self, X)

    monkeypatch.setattr(CLIPAdapterClassifier, method, held)
    return calls, gate


def prepare_until_ready(session, timeout=60):
    """Run ``session.prepare()`` in a thread; return the thread once the session is ready
    (or after ``timeout`` seconds)."""
    import time

    worker = threading.Thread(target=session.prepare)
    worker.start()
    t0 = time.time()
    while not session.ready and time.time() - t0 < timeout:
        time.sleep(0.02)
    return worker


def tiny_estimator():
    from skpeal import CLIPAdapterClassifier

    return CLIPAdapterClassifier(**TINY_EST)


@pytest.fixture
def session_factory(tmp_path, image_folder):
    """Build sessions over one project folder (a second call resumes the project)."""
    from skpeal.labeling import LabelingSession

    folder, _ = image_folder
    made = []

    def make(**kw):
        kw.setdefault("images", folder)
        kw.setdefault("classes", CLASSES)
        kw.setdefault("estimator", tiny_estimator())
        kw.setdefault("batch_size", 5)
        s = LabelingSession(tmp_path / "project", **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


PYTHON = sys.executable


def free_port():
    """A free TCP port on 127.0.0.1 (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright, one per test module."""
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need the 'browser' extra (playwright)")
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()
