"""The page while the server still loads its model (Debian's chromium, Playwright).

The server is the web app in this process over a :class:`StartingSession` whose model load
is held by the test. A restart: picks and the undo of a pick work at once; a submit says
the model is still loading (not an error) and goes through by itself once the model is
there. Picks typed meanwhile, or while the server is away, are neither lost nor
reordered; the page sends each pick in its own request, and the latest pick of an image
wins whatever order the requests arrive in. A new project: the page says the model is
loading, and its first batch shows by itself once the session gives it; with a random
first batch (``--init random``) the batch shows at once, before the model.
"""

import contextlib
import sqlite3
import threading
import time

import pytest

from .conftest import CHROMIUM, free_port

pytest.importorskip("fastapi", reason="the web app needs the 'label' extra (fastapi)")
uvicorn = pytest.importorskip("uvicorn", reason="the web app needs the 'label' extra")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the 'browser' extra (playwright)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it)")


def _serve(app):
    """Run ``app`` in a thread; returns (url, stop)."""
    port = free_port()
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


@contextlib.contextmanager
def _serving(starting, go, **app_kw):
    """The web app over ``starting`` in a thread: yields its URL; at the end the model load
    held on ``go`` is let go, and the server, its worker and the session are closed."""
    from skpeal.labeling.app import create_app

    app = create_app(starting, **app_kw)
    url, stop = _serve(app)
    try:
        yield url
    finally:
        go.set()
        stop()
        app.state.worker.stop(timeout=30)
        starting.close()


@pytest.fixture(params=[False])
def loading_server(request, session_factory):
    """(url, project, ids of the pending batch, go, starting): a restart whose model loads
    on ``go``; with ``request.param`` the batch before it was submitted (one answer)."""
    from skpeal.labeling._starting import StartingSession

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
    with _serving(starting, go, model_wait=0.3) as url:
        yield url, project, ids, go, starting


@pytest.fixture
def page(browser):
    """A 1280x800 page of the module's chromium, closed after the test."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    yield page
    page.close()


def _labels_in_db(project):
    db = sqlite3.connect(project / "labels.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    finally:
        db.close()


def test_submit_while_the_model_loads_waits_and_goes_through_by_itself(page,
                                                                      loading_server):
    url, project, ids, go, starting = loading_server
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


@pytest.mark.parametrize("loading_server", [True], indirect=True)
def test_undo_of_an_answer_while_the_model_loads_is_sent_again_by_itself(page,
                                                                       loading_server):
    url, project, ids, go, starting = loading_server
    # the tab that submitted the answer (an undo takes back its own tab's answers)
    page.add_init_script("sessionStorage.setItem('skpeal-client', 'before')")
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


def test_a_new_project_says_the_model_is_loading_then_shows_its_first_batch(
        page, session_factory, image_folder):
    from skpeal.labeling._starting import StartingSession

    from .conftest import CLASSES

    go = threading.Event()

    def build():  # the imports, the folder listed, the model loaded: held by the test
        assert go.wait(120)
        return session_factory()

    project = image_folder[0].parent / "project"  # session_factory's
    starting = StartingSession.new_project(project, build, images=image_folder[0],
                                           classes=CLASSES)
    with _serving(starting, go) as url:
        page.goto(url)
        page.wait_for_selector("#busy-text:has-text('Loading the model')")
        assert page.eval_on_selector_all(".card", "els => els.length") == 0
        assert "images" not in page.inner_text("#progress-text")  # not "/ 0 images"
        assert page.is_hidden("#error")
        go.set()  # no reload: the page shows the first batch when the session gives it
        page.wait_for_function("document.querySelectorAll('.card').length == 5",
                               timeout=120000)
        assert page.is_hidden("#error")


@pytest.fixture
def random_start_server(session_factory, image_folder):
    """(url, project, go, starting): a new ``--init random`` project, its first batch drawn
    before the model, which loads on ``go``."""
    from skpeal.labeling._project import start_project_without_model
    from skpeal.labeling._starting import StartingSession

    from .conftest import CLASSES

    go = threading.Event()

    def build():  # the imports and the model: held by the test
        assert go.wait(120)
        return session_factory(images=None, classes=None)

    project = image_folder[0].parent / "project"  # session_factory's
    start_project_without_model(project, image_folder[0], CLASSES, {"batch_size": 5})
    starting = StartingSession(project, build)
    with _serving(starting, go, model_wait=0.3) as url:
        yield url, project, go, starting


def test_a_random_first_batch_shows_at_once_while_the_model_loads(page, random_start_server):
    """``skpeal label --init random``: the project is made and its batch drawn before the
    model; the page shows it at once (no suggestion), picks are saved, and once the model
    is there the same cards get its suggestions, without a reload, their picks and focus
    kept; the batch stays the same."""
    from .conftest import CLASSES

    url, project, go, starting = random_start_server
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    assert starting.loading  # shown before the model is there
    files = page.eval_on_selector_all(".card .file", "els => els.map(e => e.textContent)")
    says = page.eval_on_selector_all(".card .suggest", "els => els.map(e => e.textContent)")
    assert says == ["no suggestion yet"] * 5, says
    assert page.inner_text("#model-info") == "no model yet"  # not "model round -1"
    assert page.eval_on_selector_all(".card", "els => els.filter(e => e.dataset.label)"
                                     ".length") == 0  # nothing pre-selected
    page.keyboard.press("1")
    _pump(page, lambda: len(_picks_in_db(project)) == 1)
    focused = page.eval_on_selector_all(".card", "els => els.findIndex(e => "
                                        "e.classList.contains('focus'))")
    go.set()
    assert starting.wait(120) and starting.session is not None
    page.wait_for_function("[...document.querySelectorAll('.card .suggest')].every("
                           "e => e.textContent.startsWith('model: '))", timeout=30000)
    cards = page.eval_on_selector_all(".card", """els => els.map(e => [
        e.querySelector('.file').textContent, e.dataset.label,
        e.querySelector('.state').className, e.classList.contains('focus')])""")
    assert [c[0] for c in cards] == files  # the same cards, in the same order
    assert cards[0][1] == CLASSES[0] and "saved" in cards[0][2]  # the pick, kept
    assert [c[3] for c in cards].index(True) == focused
    page.wait_for_function("document.querySelectorAll('#curve circle').length == 1")
    axis = page.eval_on_selector_all("#curve text", "els => els.map(e => e.textContent)")
    assert axis.count("round 0") == 1, axis  # one round: not at both ends of the axis
    page.reload()
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    assert page.eval_on_selector_all(
        ".card .file", "els => els.map(e => e.textContent)") == files  # the same batch
    assert len(_picks_in_db(project)) == 1
    assert page.is_hidden("#error")


def test_answers_given_before_the_model_then_the_message_says_it_is_loaded(
        page, random_start_server):
    """A batch submitted while the model loads is saved at once; its message says the model
    learns from the answers once loaded, and says so when it is."""
    url, project, go, starting = random_start_server
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    for k in ["1", "2", "3", "1", "2"]:
        page.keyboard.press(k)
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 5")
    page.keyboard.press("Enter")
    page.wait_for_selector("#message:has-text('Saved 5 answers. The model learns from them "
                           "once it is loaded.')")
    assert starting.loading and _labels_in_db(project) == 5
    go.set()
    page.wait_for_selector("#message:has-text('Saved 5 answers. The model is loaded and "
                           "learns from them.')", timeout=120000)
    assert page.is_hidden("#error")


def _saved(page):
    """{card index: label} of the cards that say "saved" ('' = not sure)."""
    return {i: lab for i, lab, state in page.eval_on_selector_all(".card", """els => els.map(
        (e, i) => [i, e.dataset.label, e.querySelector('.state').className])""")
            if "saved" in state.split()}


def _picks_in_db(project):
    db = sqlite3.connect(project / "labels.sqlite")
    try:
        return dict(db.execute("SELECT image_id, label FROM picks WHERE state = 'open' "
                               "ORDER BY id").fetchall())
    finally:
        db.close()


def _labels_in_force(project):
    db = sqlite3.connect(project / "labels.sqlite")
    try:
        return dict(db.execute("SELECT image_id, label FROM labels WHERE kind = 'label' "
                               "ORDER BY id").fetchall())
    finally:
        db.close()


def _pump(page, until, timeout=30):
    """Let Playwright run its route handlers until ``until()`` holds."""
    t0 = time.time()
    while not until():
        assert time.time() - t0 < timeout, "timed out"
        page.wait_for_timeout(20)


def test_picks_go_side_by_side_and_the_latest_of_an_image_wins_in_any_order(page,
                                                                        loading_server):
    url, project, ids, go, starting = loading_server
    classes = starting.classes
    held = []
    page.route("**/api/pick", lambda r: held.append(r))  # each waits here for the test
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    for k in ["1", "ArrowLeft", "2", "3"]:  # card 0: red then green; card 1: blue
        page.keyboard.press(k)
    # three requests on their way at once: none waits for the reply to another
    _pump(page, lambda: len(held) == 3)
    sent = [p for r in held for p in r.request.post_data_json["picks"]]
    assert [(b["image_id"], b["label"]) for b in sent] == [
        (ids[0], classes[0]), (ids[0], classes[1]), (ids[1], classes[2])]
    assert sent[0]["seq"] < sent[1]["seq"] < sent[2]["seq"]
    # nothing is shown as saved before the server committed it
    assert _saved(page) == {} and _picks_in_db(project) == {}
    held[1].continue_()  # the later pick of card 0 arrives first
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 1")
    assert _saved(page) == {0: classes[1]} and _picks_in_db(project) == {ids[0]: classes[1]}
    with page.expect_response("**/api/pick") as reply:
        held[0].continue_()  # the earlier pick arrives last: not stored
    assert reply.value.json()["pick_ids"] == [None]
    assert _saved(page) == {0: classes[1]} and _picks_in_db(project) == {ids[0]: classes[1]}
    held[2].continue_()
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 2")
    assert _saved(page) == {0: classes[1], 1: classes[2]}
    assert _picks_in_db(project) == {ids[0]: classes[1], ids[1]: classes[2]}
    page.reload()  # what the server gives back is what the page showed
    page.unroute("**/api/pick")
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 2")
    assert _saved(page) == {0: classes[1], 1: classes[2]}


def test_a_batch_read_before_a_pick_was_confirmed_does_not_hide_the_pick(page,
                                                                       loading_server):
    url, project, ids, go, starting = loading_server
    classes = starting.classes
    down, hold, held = [False], [False], []
    page.route("**/api/status", lambda r: r.abort("connectionrefused") if down[0]
               else r.continue_())
    page.route("**/api/batch*", lambda r: held.append(r) if hold[0] else r.continue_())
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    hold[0] = down[0] = True  # the server seems away, then back: the page reloads
    page.wait_for_selector("#offline", state="visible")  # its batch
    down[0] = False
    _pump(page, lambda: held)
    stale = held[0].fetch()  # the server's batch now, before the pick below
    page.keyboard.press("1")
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 1")
    assert _picks_in_db(project) == {ids[0]: classes[0]}
    with page.expect_response("**/api/batch*"):
        held[0].fulfill(response=stale)  # arrives after the pick's confirmation
    page.wait_for_function("!loading")
    assert _saved(page) == {0: classes[0]}


def test_picks_typed_while_away_or_while_a_submit_waits_are_kept_latest_wins(page,
                                                                         loading_server):
    url, project, ids, go, starting = loading_server
    classes = starting.classes
    away = [True]
    page.route("**/api/pick", lambda r: r.abort("connectionrefused") if away[0]
               else r.continue_())
    held, hold = [], [False]
    page.route("**/api/answers", lambda r: held.append(r) if hold[0] else r.continue_())
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    # the server is away: card 0 red then blue, card 1 green; kept, none shown saved
    for k in ["1", "ArrowLeft", "3", "2"]:
        page.keyboard.press(k)
    page.wait_for_function("document.querySelectorAll('.card .state.unsent').length == 2")
    assert _picks_in_db(project) == {} and page.is_visible("#offline")
    away[0] = False  # back: the page sends what waited, the latest pick of each image
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 2")
    assert _picks_in_db(project) == {ids[0]: classes[2], ids[1]: classes[1]}
    for k in ["1", "2", "3"]:
        page.keyboard.press(k)
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 5")
    # Enter before the model: 503, sent again by itself; card 4 changes meanwhile
    page.keyboard.press("Enter")
    page.wait_for_selector("#message:has-text('The model is still loading')")
    page.keyboard.press("1")  # focus stays on the last card
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 5")
    assert _picks_in_db(project)[ids[4]] == classes[0]
    # a resend on its way (held here) while card 4 changes again: kept in the page
    hold[0] = True
    _pump(page, lambda: held)
    page.keyboard.press("2")
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 4")
    go.set()  # the model is there: the held resend goes through with the answers it has
    _pump(page, lambda: not starting.loading, timeout=120)
    hold[0] = False
    held[0].continue_()
    page.wait_for_selector("#message:has-text('Saved 5 answers')", timeout=120000)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")  # the next
    assert _labels_in_force(project) == {ids[0]: classes[2], ids[1]: classes[1],
                                         ids[2]: classes[0], ids[3]: classes[1],
                                         ids[4]: classes[1]}
    assert "1 changed after Enter: saved too" in page.inner_text("#message")
    assert page.is_hidden("#error")


@pytest.mark.parametrize("loading_server", [True], indirect=True)
@pytest.mark.parametrize("second_undo", [False, True])
def test_a_pick_typed_while_an_undo_waits_for_the_model_is_not_what_it_undoes(
        page, loading_server, second_undo):
    """``u`` with no pick on screen waits for the model (it reopens a submitted answer);
    a pick typed meanwhile is not what it undoes, and a second ``u`` pressed after that
    pick waits behind the first (it was dropped) and undoes the pick."""
    url, project, ids, go, starting = loading_server
    classes = starting.classes
    page.add_init_script("sessionStorage.setItem('skpeal-client', 'before')")
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length == 5")
    page.wait_for_selector("#busy-text:has-text('Loading the model')")
    page.keyboard.press("u")  # no pick on screen: it undoes the submitted answer
    page.wait_for_selector("#message:has-text('The undo is sent by itself')")
    page.keyboard.press("2")  # typed while the undo waits
    page.wait_for_function("document.querySelectorAll('.card .state.saved').length == 1")
    if second_undo:
        page.keyboard.press("u")
    time.sleep(1.5)  # the undo is sent again at least once: the pick stays
    assert _picks_in_db(project) == {ids[0]: classes[1]}
    go.set()
    done = "Undone your pick" if second_undo else "Reopened"
    page.wait_for_selector(f"#message:has-text('{done}')", timeout=120000)
    page.wait_for_function("document.querySelectorAll('.card').length == 6")
    assert _picks_in_db(project) == ({} if second_undo else {ids[0]: classes[1]})
    assert _labels_in_db(project) == 2  # the answer, and the undo row that cancels it
    assert page.is_hidden("#error")
