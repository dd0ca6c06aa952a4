"""The page while the server still loads its model (Debian's chromium, Playwright).

The server is the web app in this process over a :class:`StartingSession` whose model load
is held by the test. A restart: picks and the undo of a pick work at once; a submit says
the model is still loading (not an error) and goes through by itself once the model is
there. A new project: the page says the model is loading, and its first batch shows by
itself once the session gives it.
"""

import os
import shutil
import sqlite3
import threading
import time

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists(
    "/usr/bin/chromium") else None)
pytest.importorskip("fastapi", reason="the web app needs the 'label' extra (fastapi)")
uvicorn = pytest.importorskip("uvicorn", reason="the web app needs the 'label' extra")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the 'browser' extra (playwright)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app):
    """Run ``app`` in a thread; returns (url, stop)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.time()
    while not server.started and time.time() - t0 < 30:
        time.sleep(0.05)
    assert server.started

    def stop():
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}/", stop


@pytest.fixture(params=[False])
def loading_server(request, session_factory):
    """(url, project, ids of the pending batch, go, starting): a restart whose model loads
    on ``go``; with ``request.param`` the batch before it was submitted (one answer)."""
    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import create_app

    s = session_factory()
    s.prepare()
    ids = [it["image_id"] for it in s.next_batch(client="before")]
    if request.param:  # one answer submitted, the rest given back: a new pending batch
        s.answer([(ids[0], "red")], client="before")
        s.release("before")
        ids = [it["image_id"] for it in s.next_batch(client="before")]
    s.release()
    project = s.project
    s.close()
    go = threading.Event()

    def build():  # the model's import and load, held until the test lets it go
        assert go.wait(120)
        return session_factory(images=None, classes=None)

    starting = StartingSession(project, build)
    app = create_app(starting, model_wait=0.3)
    url, stop = _serve(app)
    try:
        yield url, project, ids, go, starting
    finally:
        go.set()
        stop()
        app.state.worker.stop(timeout=30)
        starting.close()


def _labels_in_db(project):
    db = sqlite3.connect(project / "labels.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    finally:
        db.close()


def test_submit_while_the_model_loads_waits_and_goes_through_by_itself(browser,
                                                                         loading_server):
    url, project, ids, go, starting = loading_server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('.card').length == 5")
        cards = page.eval_on_selector_all(".card", "els => els.map(e => e.dataset.imageId)")
        assert [int(x) for x in cards] == ids  # the pending batch, from the store
        page.wait_for_selector("#busy-text:has-text('Loading the model')")
        # picks and the undo of a pick: at once, while the model loads
        for k in ["1", "2", "3", "1", "2"]:
            page.keyboard.press(k)
        page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 5")
        page.keyboard.press("u")
        page.wait_for_selector("#message:has-text('Undone your pick')")
        page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 4")
        page.keyboard.press("2")  # the focus is back on the undone card
        page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 5")
        # a submit before the model: a plain message, not an error; nothing labelled yet
        page.keyboard.press("Enter")
        page.wait_for_selector("#message:has-text('The model is still loading; your picks "
                               "are saved')")
        assert page.is_hidden("#error")
        assert page.is_disabled("#submit")
        time.sleep(1.5)  # at least one resend, still refused: nothing stored
        assert _labels_in_db(project) == 0 and starting.session is None
        assert page.is_hidden("#error")
        go.set()  # the model is there: the page's resend goes through
        page.wait_for_selector("#message:has-text('Saved 5 answers')", timeout=120000)
        assert _labels_in_db(project) == 5
        assert page.is_hidden("#error")
    finally:
        page.close()


@pytest.mark.parametrize("loading_server", [True], indirect=True)
def test_undo_of_an_answer_while_the_model_loads_is_sent_again_by_itself(browser,
                                                                          loading_server):
    url, project, ids, go, starting = loading_server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # the tab that submitted the answer (an undo takes back its own tab's answers)
    page.add_init_script("sessionStorage.setItem('skpeal-client', 'before')")
    try:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('.card').length == 5")
        page.wait_for_selector("#busy-text:has-text('Loading the model')")
        # no pick on screen: the undo takes back the submitted answer, which needs the model
        page.keyboard.press("u")
        page.wait_for_selector("#message:has-text('The model is still loading; your picks "
                               "are saved. The undo is sent by itself')")
        assert page.is_hidden("#error") and starting.session is None
        time.sleep(1.5)  # resent at least once, still refused: the answer is in force
        assert _labels_in_db(project) == 1
        go.set()
        page.wait_for_selector("#message:has-text('Reopened')", timeout=120000)
        assert page.is_hidden("#error")
        page.wait_for_function("document.querySelectorAll('.card').length == 6")
    finally:
        page.close()


def test_a_new_project_says_the_model_is_loading_then_shows_its_first_batch(
        browser, session_factory, image_folder):
    from skpeal.labeling._starting import StartingSession
    from skpeal.labeling.app import create_app

    from .conftest import CLASSES

    go = threading.Event()

    def build():  # the imports, the folder listed, the model loaded: held by the test
        assert go.wait(120)
        return session_factory()

    project = image_folder[0].parent / "project"  # session_factory's
    starting = StartingSession.new_project(project, build, images=image_folder[0],
                                           classes=CLASSES)
    app = create_app(starting)
    url, stop = _serve(app)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(url)
        page.wait_for_selector("#busy-text:has-text('Loading the model')")
        assert page.eval_on_selector_all(".card", "els => els.length") == 0
        assert page.is_hidden("#error")
        go.set()  # no reload: the page shows the first batch when the session gives it
        page.wait_for_function("document.querySelectorAll('.card').length == 5",
                               timeout=120000)
        assert page.is_hidden("#error")
    finally:
        page.close()
        go.set()
        stop()
        app.state.worker.stop(timeout=30)
        starting.close()
