"""The page in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

The server is ``skpeal label`` itself, started as a subprocess on a free localhost port with
the tiny model; one test kills it with SIGKILL mid-session and restarts it.
"""

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import CHROMIUM, free_port

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


def photo_tiles(folder, n=60, seed=0):
    """Real photos (scikit-learn's two sample photos) cut into 250x250 JPEG tiles.

    A third of them stay plain, a third get a local defect (a dark speck of about 8 px),
    a third a global one (a colour cast and noise), like textile inspection photos.
    Returns the class names.
    """
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    names = ["plain", "local defect", "global defect"]
    for i in range(n):
        src = photos[i % 2]
        y, x = rng.integers(0, src.shape[0] - 250), rng.integers(0, src.shape[1] - 250)
        a = src[y:y + 250, x:x + 250].astype(np.int16)
        kind = i % 3
        if kind == 1:
            cy, cx = rng.integers(20, 230, size=2)
            yy, xx = np.ogrid[:250, :250]
            a[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 20
        elif kind == 2:
            a = a + np.array([40, -20, -20]) + rng.normal(0, 18, size=a.shape)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
            Path(folder) / f"tile{i:03d}.jpg", quality=92)
    return names


class Server:
    """``skpeal label`` in a subprocess."""

    def __init__(self, images, project, classes, port, batch_size=5, init="zero-shot"):
        """``init="zero-shot"``: the model's first batch (the tests of this module check its
        suggestions); None: ``skpeal label``'s default."""
        env = {**os.environ, "PYTHONPATH": os.fspath(ROOT), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skpeal.cli", "label", os.fspath(images), "--classes",
             *classes, "--project", os.fspath(project), "--port", str(port),
             "--batch-size", str(batch_size), "--model", "skpeal-tiny", "--epochs", "2"]
            + ([] if init is None else ["--init", init]),
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


@pytest.fixture
def setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    classes = photo_tiles(images)
    return images, tmp_path / "project", classes


@contextlib.contextmanager
def opened_page(browser, setup):
    """``skpeal label`` on ``setup``'s project and a page open on it (1280x800)."""
    images, project, classes = setup
    server = Server(images, project, classes, free_port())
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        yield page
    finally:
        server.kill()


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


def saved_labels(page):
    """The answer of every card as the page shows it ('' = not sure, None = no answer)."""
    return page.eval_on_selector_all(
        ".card", "els => els.map(e => e.dataset.answered == '1' ? e.dataset.label : null)")


def wait_saved(page, n):
    page.wait_for_function(f"document.querySelectorAll('.card .state.saved').length == {n}")


def picks_in_db(project):
    db = sqlite3.connect(project / "labels.sqlite")
    try:
        return db.execute("SELECT image_id, label FROM picks WHERE state = 'open' "
                          "ORDER BY id").fetchall()
    finally:
        db.close()


def test_a_new_project_by_default_shows_a_first_batch_covering_the_looks_then_suggests(
        browser, setup):
    """``skpeal label`` with no ``--init``: the project is made with ``init="pixels"``, its
    first batch (typical images of the tiles' looks: colour-cast tiles and others; an 8 px
    speck is lost at 16x16 pixels) shown before the model, which then adds its
    suggestions to the cards."""
    images, project, classes = setup
    server = Server(images, project, classes, free_port(), batch_size=6, init=None)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        first = wait_batch(page, n=6)
        db = sqlite3.connect(project / "labels.sqlite")
        try:
            settings = json.loads(db.execute("SELECT value FROM meta WHERE key = 'settings'")
                                  .fetchone()[0])
            paths = dict(db.execute("SELECT id, path FROM images").fetchall())
        finally:
            db.close()
        assert settings["init"] == "pixels"
        kinds = {int(re.search(r"tile(\d+)", paths[i]).group(1)) % 3 for i in first}
        assert 2 in kinds and kinds & {0, 1}  # photo_tiles: i % 3 is the class
        page.wait_for_function("[...document.querySelectorAll('.card .suggest')].every("
                               "e => e.textContent.startsWith('model: '))", timeout=120000)
        assert card_ids(page) == first
    finally:
        server.kill()


def test_picks_are_saved_at_once_enter_asks_undo_and_reload(browser, setup, tmp_path):
    images, project, classes = setup
    with opened_page(browser, setup) as page:
        first = wait_batch(page)
        # the tiny model is unsure (~33%): the suggestion is shown, nothing is pre-selected
        sug = page.inner_text(".card .suggest")
        assert re.match(r"model: .+ \(\d+%\)", sug)
        assert saved_labels(page) == [None] * 5
        assert page.inner_text(".card .state") == "no answer yet"
        label_with_keys(page, ["1", "2", "s"])
        wait_saved(page, 3)  # each card says "saved" only once the server committed it
        assert saved_labels(page)[:3] == [classes[0], classes[1], ""]
        assert [(i, lab) for i, lab in picks_in_db(project)] == [
            (first[0], classes[0]), (first[1], classes[1]), (first[2], None)]
        # Enter with two unanswered images asks first; nothing is submitted
        page.keyboard.press("Enter")
        page.wait_for_selector("#message:has-text('2 images have no answer yet')")
        assert sqlite3.connect(project / "labels.sqlite").execute(
            "SELECT COUNT(*) FROM labels").fetchone()[0] == 0
        # a reload keeps the picks (they live on the server), and the keys go on where
        # the person was: the first card without a pick, not card 1 (a key there would
        # have replaced an answer)
        page.reload()
        wait_batch(page)
        wait_saved(page, 3)
        assert card_ids(page) == first
        assert page.eval_on_selector(".card.focus", "e => Number(e.dataset.imageId)") \
            == first[3]
        # undo takes back the last pick (the skip), not anything else
        page.keyboard.press("u")
        page.wait_for_selector("#message:has-text('Undone your pick')")
        wait_saved(page, 2)
        assert saved_labels(page) == [classes[0], classes[1], None, None, None]
        assert card_ids(page) == first
        label_with_keys(page, ["3", "1", "2"])  # the focus is back on the undone card
        wait_saved(page, 5)
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Saved 5 answers")
        second = wait_batch(page, not_ids=first)
        page.wait_for_function("document.getElementById('model-info').textContent"
                               ".includes('round 1')")
        # the stopping suggestion in plain words, the criteria behind a toggle
        page.wait_for_function("document.getElementById('stop-text').textContent"
                               ".startsWith('Suggestion: ')")
        assert "kappa_average" not in page.inner_text("#stop-text")
        # the estimate and its interval are said once (they were repeated: issue 23)
        assert page.inner_text("#stop-text").count("likely between") == 1
        assert not page.is_visible("#stop-details")
        # nothing picked in the new batch: undo reopens the last submitted answer with the
        # person's own answer; the batch is neither grown nor reordered nor hidden. The
        # button, like the key, gives the undo its place in the tab's count of picks
        page.evaluate("() => { const f = window.fetch; window.undos = []; window.fetch = "
                      "(u, o) => { if (String(u).includes('api/undo')) window.undos.push("
                      "JSON.parse(o.body)); return f(u, o); }; }")
        page.click("#undo")
        page.wait_for_selector("#message:has-text('Reopened')")
        assert [type(b["seq"]) for b in page.evaluate("window.undos")] == [int]
        page.wait_for_function("document.querySelectorAll('.card').length == 6")
        assert card_ids(page) == second + [first[-1]]
        assert saved_labels(page)[-1] == classes[1]
        assert "refitted when you submit" in page.inner_text("#message")
        csv_text = page.evaluate("fetch('api/export.csv').then(r => r.text())")
        assert len(csv_text.splitlines()) == 1 + 4  # 5 labels minus the reopened one


def test_sigkill_while_answering_keeps_the_batch_and_its_picks(browser, setup):
    images, project, classes = setup
    port = free_port()
    server = Server(images, project, classes, port)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        shown = wait_batch(page)
        label_with_keys(page, ["1", "2", "3", "1", "2"])
        wait_saved(page, 5)
        page.keyboard.press("Enter")
        page.wait_for_selector("#message:has-text('Saved 5 answers')")
        second = wait_batch(page, not_ids=shown)
        label_with_keys(page, ["3", "s"])
        wait_saved(page, 2)
        server.kill()  # SIGKILL while the person is answering
        assert server.proc.returncode == -signal.SIGKILL
        page.wait_for_selector("#offline", state="visible", timeout=10000)
        label_with_keys(page, ["1"])  # a pick while the server is away: kept, shown unsent
        page.wait_for_selector(".card .state.unsent")
        server = Server(images, project, classes, port)
        # no reload: the page reconnects by itself, sends the waiting pick, same batch
        page.wait_for_selector("#offline", state="hidden", timeout=30000)
        wait_saved(page, 3)
        assert card_ids(page) == second
        assert saved_labels(page)[:3] == [classes[2], "", classes[0]]
        # a second kill, then a fresh page in place of the first (a tab still open would
        # hold its batch, rightly, and a second tab gets other images): the same batch,
        # same order, with its picks
        page.close()
        server.kill()
        server = Server(images, project, classes, port)
        page2 = browser.new_page()
        page2.goto(server.url)
        assert wait_batch(page2) == second
        wait_saved(page2, 3)
        db = sqlite3.connect(project / "labels.sqlite")
        rows = db.execute("SELECT image_id FROM labels WHERE kind = 'label'").fetchall()
        assert sorted(r[0] for r in rows) == sorted(shown)  # every label once
    finally:
        server.kill()


def test_a_closed_tab_gives_its_batch_and_picks_to_the_next_tab(browser, setup):
    # found by hand: a person who closed the tab and opened the page again got other
    # images, the closed tab's batch (with its picks) held for the 10-minute lease
    classes = setup[2]
    with opened_page(browser, setup) as page:
        shown = wait_batch(page)
        label_with_keys(page, ["1", "2"])
        wait_saved(page, 2)
        url = page.url
        page.close()  # pagehide: the page tells the server it leaves
        page2 = browser.new_page(viewport={"width": 1280, "height": 800})
        page2.goto(url)
        assert wait_batch(page2) == shown
        wait_saved(page2, 2)
        assert saved_labels(page2)[:2] == [classes[0], classes[1]]


def test_the_buttons_ask_as_the_keys_do_and_quick_undos_go_out_in_order(browser, setup):
    """Found reading the page: the Submit button submitted unanswered images without the
    question Enter asks (its click event was taken for a resend); and three quick ``u``
    went out side by side, so the last message and the focus could be another undo's
    (seen driving the page while the server was busy)."""
    with opened_page(browser, setup) as page:
        first = wait_batch(page)
        label_with_keys(page, ["1", "2", "3"])
        wait_saved(page, 3)
        page.click("#submit")  # two images without an answer: asked, nothing submitted
        page.wait_for_selector("#message:has-text('2 images have no answer yet')")
        label_with_keys(page, ["1", "2"])
        wait_saved(page, 5)
        page.click("#submit")
        second = wait_batch(page, not_ids=first)
        label_with_keys(page, ["1", "2"])
        wait_saved(page, 2)
        # every undo reply held back 300 ms in the page: undos sent side by side overlap
        page.evaluate("() => { const f = window.fetch; window.undos = []; window.fetch = "
                      "(u, o) => { if (!String(u).includes('api/undo')) return f(u, o); "
                      "const t = {sent: performance.now()}; window.undos.push(t); return "
                      "f(u, o).then((r) => new Promise((ok) => setTimeout(() => { t.back = "
                      "performance.now(); ok(r); }, 300))); }; }")
        label_with_keys(page, ["u", "u", "u"])  # the two picks, then the last answer
        page.wait_for_function("window.undos.length == 3 && window.undos[2].back", timeout=30000)
        undos = page.evaluate("window.undos")
        assert all(b["sent"] >= a["back"] for a, b in zip(undos, undos[1:])), undos
        page.wait_for_function("document.querySelectorAll('.card').length == 6")
        assert card_ids(page) == second + [first[-1]]
        assert page.inner_text("#message").startswith("Reopened")
        assert page.eval_on_selector(".card.focus", "e => Number(e.dataset.imageId)") \
            == first[-1]
        assert saved_labels(page)[:2] == [None, None]


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_layout_focused_card_and_controls_in_view(browser, setup, size, tmp_path):
    images, project, classes = setup
    server = Server(images, project, classes, free_port(), batch_size=10)
    shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    try:
        page = browser.new_page(viewport={"width": size[0], "height": size[1]},
                                device_scale_factor=2)
        page.goto(server.url)
        wait_batch(page, n=10)
        in_view = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
            return r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 &&
                   r.right <= innerWidth; }"""
        clear_of_bar = """() => { const c = document.querySelector('.card.focus')
            .getBoundingClientRect(); const b = document.getElementById('actions')
            .getBoundingClientRect(); return c.top >= 0 && c.bottom <= b.top + 1; }"""
        for k in range(10):
            assert page.evaluate(clear_of_bar), f"card {k} is hidden at {size}"
            for sel in ("#submit", "#undo", ".keys"):
                assert page.evaluate(in_view, sel), f"{sel} out of view at card {k}, {size}"
            page.keyboard.press("1" if k % 2 else "2")
        # sharp thumbnails: at a pixel ratio of 2 the browser takes the 384 or 768 px one
        page.wait_for_function("document.querySelector('.card img').currentSrc !== ''")
        src = page.eval_on_selector(".card img", "e => e.currentSrc")
        assert re.search(r"size=(384|768)", src), src
        # the card size is adjustable (] grows it); the choice is kept
        w0 = page.eval_on_selector(".card", "e => e.getBoundingClientRect().width")
        page.keyboard.press("]")
        page.keyboard.press("]")
        page.wait_for_function(f"document.querySelector('.card').getBoundingClientRect()"
                               f".width > {w0}")
        assert page.evaluate(clear_of_bar)
        # z opens the focused image at full resolution; + zooms; drag pans; Esc closes
        page.wait_for_function("!document.querySelector('.card .state.saving')")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("z")
        page.wait_for_selector("#viewer", state="visible")
        page.wait_for_function("document.getElementById('viewer-img').naturalWidth > 0")
        nat = page.eval_on_selector("#viewer-img", "e => [e.naturalWidth, e.src]")
        assert nat[0] == 250 and "full=1" in nat[1]  # the original file, not a thumbnail
        shown = page.eval_on_selector("#viewer-img", "e => e.getBoundingClientRect().width")
        assert shown > 500  # enlarged to fit the screen
        page.wait_for_selector("#viewer-caption:has-text('of full resolution')")
        if size == (1280, 800):
            page.screenshot(path=os.fspath(shots / "label_fullsize.png"), scale="css")
        page.keyboard.press("+")
        page.keyboard.press("+")
        zoomed = page.eval_on_selector("#viewer-img", "e => e.getBoundingClientRect().width")
        assert zoomed > 1.4 * shown
        box = page.eval_on_selector("#viewer-img", "e => { const r = e.getBoundingClientRect();"
                                                   " return [r.x + r.width / 2, r.y + r.height"
                                                   " / 2]; }")
        page.mouse.move(*box)
        page.mouse.down()
        page.mouse.move(box[0] + 120, box[1] + 60)
        page.mouse.up()
        moved = page.eval_on_selector("#viewer-img", "e => e.getBoundingClientRect().x")
        assert moved > box[0] - zoomed / 2 + 100
        page.keyboard.press("f")
        page.keyboard.press("Escape")
        page.wait_for_selector("#viewer", state="hidden")
        # a click on a thumbnail opens it too
        page.click(".card:nth-child(3) img")
        page.wait_for_selector("#viewer", state="visible")
        page.keyboard.press("Escape")
        if size == (1280, 800):
            page.screenshot(path=os.fspath(shots / "label_page.png"), scale="css")
    finally:
        server.kill()


def test_a_pick_refused_for_a_full_disk_is_kept_and_sent_again(browser, setup):
    images, project, classes = setup
    server = Server(images, project, classes, free_port())
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        refused = []

        def full_once(route):
            if not refused:  # the server's answer on a full disk: nothing was stored
                refused.append(route.request.post_data_json)
                route.fulfill(status=507, content_type="application/json",
                              body='{"detail": "the disk is full: No space left on device"}')
            else:
                route.continue_()

        page.route("**/api/pick", full_once)
        page.goto(server.url)
        first = wait_batch(page)
        label_with_keys(page, ["2"])
        page.wait_for_selector(".card .state.unsent")  # not shown as saved, not dropped
        assert "disk is full" in page.inner_text("#error")
        wait_saved(page, 1)  # sent again by itself, then committed
        assert refused and [(p["image_id"], p["label"]) for p in refused[0]["picks"]] == [
            (first[0], classes[1])]
        assert picks_in_db(project) == [(first[0], classes[1])]
        page.close()
    finally:
        server.kill()


def test_a_batch_loads_three_images_at_a_time_and_picks_go_out_meanwhile(browser, setup):
    # the browser has six connections to the server: ten images at once took all of them
    # and a pick typed meanwhile waited for one; now three images load at a time, in card
    # order, and every image still loads
    images, project, classes = setup
    server = Server(images, project, classes, free_port(), batch_size=10)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        held = []
        page.route("**/api/image/**", lambda route: held.append(route))  # waits here
        page.goto(server.url)
        first = wait_batch(page, n=10)
        t0 = time.time()
        while len(held) < 3 and time.time() - t0 < 30:
            page.wait_for_timeout(50)
        page.wait_for_timeout(500)  # time for more to start, were there no limit
        assert len(held) == 3, [r.request.url for r in held]
        assert [int(re.search(r"image/(\d+)", r.request.url).group(1)) for r in held] == \
            first[:3]
        label_with_keys(page, ["2"])
        wait_saved(page, 1)  # while the images are on their way
        assert len(held) == 3
        assert picks_in_db(project) == [(first[0], classes[1])]
        # no alt text nor title meanwhile: Chromium draws a broken-image icon for an <img>
        # with either and no src (seen in screenshots)
        waiting = page.eval_on_selector_all(".card img:not([src])", "els => els.map((e) => "
                                            "[e.getAttribute('alt'), e.getAttribute('title'),"
                                            " getComputedStyle(e).content])")
        assert waiting and {tuple(w[:2]) for w in waiting} == {(None, None)}, waiting
        assert all("gradient" in w[2] for w in waiting), waiting  # a grey box, no outline
        loaded = ("[...document.querySelectorAll('.card img')].every("
                  "(i) => i.complete && i.naturalWidth > 0)")
        released, t0 = 0, time.time()
        while not page.evaluate(loaded) and time.time() - t0 < 30:
            assert len(held) - released <= 3
            while released < len(held):  # one appended while continuing is continued too
                held[released].continue_()
                released += 1
            page.wait_for_timeout(100)
        assert page.evaluate(loaded), (len(held), page.evaluate(
            "[...document.querySelectorAll('.card img')].map((i) => [i.currentSrc, i.complete])"))
        files = page.eval_on_selector_all(".card .file", "els => els.map((e) => e.textContent)")
        assert page.eval_on_selector_all(".card img", "els => els.map((e) => e.alt)") == files
        assert len(held) >= 10
        page.close()
    finally:
        server.kill()


def test_the_batch_after_enter_waits_for_no_status_request(browser, setup):
    """After Enter the page asks for the next batch beside its status request, not after
    it (before: the status first; under load the batch waited for it: issue 23 item 11)."""
    images, project, classes = setup
    server = Server(images, project, classes, free_port())
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        held, hold = [], []

        def status(route):
            if hold:
                held.append(route)  # answered only once the next batch is on screen
            else:
                route.continue_()

        page.route("**/api/status*", status)
        page.goto(server.url)
        first = wait_batch(page)
        label_with_keys(page, ["1", "2", "3", "1", "2"])
        wait_saved(page, 5)
        hold.append(True)
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Saved 5 answers")
        second = wait_batch(page, not_ids=first, timeout=20000)
        assert len(second) == 5 and held  # on screen while the status request waited
        hold.clear()
        for route in held:
            route.continue_()
        page.close()
    finally:
        server.kill()
