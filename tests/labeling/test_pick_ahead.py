"""The batch after Enter is ready when the person asks for it (issue 23 item 11): the
web app's pick ahead while the pool is encoded and while the worker is busy."""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web app needs the 'label' extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from skpeal.labeling.app import create_app  # noqa: E402
from skpeal.strategies import lowbudget as lb  # noqa: E402

from .conftest import hold_encoding  # noqa: E402
from .test_app import wait_idle  # noqa: E402


def _until(cond, timeout=60):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _settle(calls, quiet=1.0):
    """Wait until no DropQuery started for ``quiet`` seconds (the picks ahead are made)."""
    n, t = len(calls), time.time()
    while time.time() - t < quiet:
        time.sleep(0.05)
        if len(calls) != n:
            n, t = len(calls), time.time()


def _ids(items):
    return [it["image_id"] for it in items]


def test_the_batch_after_enter_is_picked_and_stored_while_the_pool_is_encoded(
        session_factory, monkeypatch):
    """Picked among the images encoded so far while the person answers the first batch,
    stored, and given at once after Enter, also once the encoding has ended (before: the
    pick ahead was dropped while the pool was encoded, and the batch after Enter was a
    DropQuery over the whole pool in the request, beside the first refit)."""
    from skpeal.labeling import session as session_module

    monkeypatch.setattr(session_module, "FIRST_ENCODED", 10)
    calls, gate = hold_encoding(monkeypatch, 3)  # held after the sample and one chunk
    s = session_factory(strategy="auto")
    app = create_app(s)
    try:
        with TestClient(app) as client:
            _until(lambda: s.ready)
            first = client.get("/api/batch", params={"client": "a"}).json()["items"]
            assert len(first) == 5 and s.streaming
            _until(s.has_unleased)  # the next batch, picked ahead and stored
            ahead = [p["image_id"] for p in s.store.pending() if p["client"] is None]
            encoded = {int(s._ids[k]) for k in np.flatnonzero(~np.isnan(s._proba[:, 0]))}
            assert len(ahead) == 5 and set(ahead) <= encoded and not set(ahead) & set(_ids(first))
            gate.set()
            _until(lambda: not s.streaming)
            wait_idle(client)
            r = client.post("/api/answers", json={"client": "a", "answers": [
                {"image_id": i, "label": "red"} for i in _ids(first)]})
            assert r.json()["refit"] is True
            nxt = client.get("/api/batch", params={"client": "a"}).json()["items"]
            assert _ids(nxt) == ahead[:5] and {it["round"] for it in nxt} == {0}
            wait_idle(client)
            assert not set(_ids(client.get("/api/batch", params={"client": "a"}).json()[
                "items"])) & set(s.store.labelled())
    finally:
        gate.set()
        app.state.worker.stop(timeout=5)


class _Worker:
    """A refit worker that is busy until told otherwise."""

    error = None

    def __init__(self):
        self.busy, self._stop = True, False

    def wait_idle(self, timeout):
        return not self.busy

    def request(self):
        pass

    def stop(self, timeout=None):
        self._stop = True


def test_the_batch_after_enter_is_picked_and_stored_while_a_refit_runs(session_factory,
                                                                       monkeypatch):
    """A refit that outlasts a batch of answers (seconds under load): the batch after
    Enter is picked ahead beside it, stored, and handed out at once, without a pick in the
    request nor a wait for the refit (before: the pick ahead waited for the refit's end,
    and the request waited ``fresh_wait`` seconds, then picked under the session lock)."""
    s = session_factory(strategy="dropquery").prepare()
    calls = []
    select = lb.dropquery_select
    monkeypatch.setattr(lb, "dropquery_select", lambda *a, **k: calls.append(1) or select(*a, **k))
    worker = _Worker()  # a refit that runs until told otherwise
    try:
        with TestClient(create_app(s, worker=worker, fresh_wait=30.0)) as client:
            waits = []
            worker.wait_idle = lambda t: waits.append(t) or False
            def unleased():
                return [p["image_id"] for p in s.store.pending() if p["client"] is None]

            first = client.get("/api/batch", params={"client": "a"}).json()["items"]
            # picked beside the refit and stored: the next batch and the one after it
            _until(lambda: len(unleased()) == 10, timeout=30)
            assert calls == [1, 1]
            ahead = unleased()
            assert not set(ahead) & set(_ids(first))
            client.post("/api/answers", json={"client": "a", "answers": [
                {"image_id": i, "label": "red"} for i in _ids(first)]})
            nxt = client.get("/api/batch", params={"client": "a"}).json()["items"]
            assert _ids(nxt) == ahead[:5] and {it["round"] for it in nxt} == {0}
            assert waits == []  # no wait for the refit in the request
            _until(lambda: len(unleased()) == 10, timeout=30)  # one more picked ahead
            assert calls == [1, 1, 1] and unleased()[:5] == ahead[5:]
    finally:
        worker.stop()


def test_a_stored_pick_ahead_is_the_batch_a_session_without_it_gives(tmp_path, image_folder):
    """Storing the pick ahead changes no pick: the same batches, in the same order."""
    from skpeal.labeling import LabelingSession

    from .conftest import CLASSES, tiny_estimator

    folder, truth = image_folder
    batches = {}
    for ahead in (True, False):
        s = LabelingSession(tmp_path / f"project-{ahead}", folder, CLASSES,
                            estimator=tiny_estimator(), batch_size=5, strategy="dropquery")
        try:
            s.prepare()
            got = []
            for _ in range(3):
                batch = s.next_batch()
                if ahead:
                    assert s.pick_ahead() and s.has_unleased()
                got.append(_ids(batch))
                s.answer([(b["image_id"], truth[b["path"]]) for b in batch])
            batches[ahead] = got
        finally:
            s.close()
    assert batches[True] == batches[False]


def test_a_submit_during_a_refit_gets_the_batch_picked_ahead(session_factory, monkeypatch):
    """A refit that ends while the person holds a batch stores the next one; the batch
    after that is picked when that one is served (beside the next refit): a submit that
    comes during the next refit gets it without a DropQuery in the request, nor a wait
    (before 2026-12-05: picked in the request, beside the refit)."""
    from skpeal.labeling.loop import ActiveLearningLoop

    s = session_factory(strategy="dropquery").prepare()
    gate = threading.Event()
    fit = ActiveLearningLoop.fit

    def slow_fit(self, *a, **k):
        assert gate.wait(60)
        return fit(self, *a, **k)

    monkeypatch.setattr(ActiveLearningLoop, "fit", slow_fit)
    calls = []  # the thread of each DropQuery
    select = lb.dropquery_select
    monkeypatch.setattr(lb, "dropquery_select", lambda *a, **k: calls.append(
        threading.current_thread().name) or select(*a, **k))
    app = create_app(s)

    def submit(items, label):
        r = client.post("/api/answers", json={"client": "a", "answers": [
            {"image_id": i, "label": label} for i in _ids(items)]})
        assert r.json()["refit"] is True

    try:
        with TestClient(app) as client:
            wait_idle(client)
            b = client.get("/api/batch", params={"client": "a"}).json()["items"]
            submit(b, "red")  # the first refit waits at the gate ...
            c = client.get("/api/batch", params={"client": "a"}).json()["items"]
            gate.set()  # ... and ends while the person holds c: it stores the next batch
            wait_idle(client)
            assert s.has_unleased()
            _settle(calls)
            gate.clear()  # the next refit runs until told otherwise
            submit(c, "green")
            d = client.get("/api/batch", params={"client": "a"}).json()["items"]
            submit(d, "blue")  # during that refit
            assert client.get("/api/status").json()["busy"]
            _until(s.has_unleased)  # picked ahead when d was served
            waits = []
            wait_idle_ = app.state.worker.wait_idle
            app.state.worker.wait_idle = lambda t: waits.append(t) or wait_idle_(t)
            e = client.get("/api/batch", params={"client": "a"}).json()["items"]
            assert set(calls) <= {"skpeal-pick-ahead", "skpeal-refit"}  # none in a request
            assert waits == []  # ... and no wait for the refit's own pick either
            assert len(e) == 5 and {it["round"] for it in e} == {1}
            shown = [set(_ids(x)) for x in (b, c, d, e)]
            assert len(set().union(*shown)) == 20
            gate.set()
            wait_idle(client)
    finally:
        gate.set()
        app.state.worker.stop(timeout=5)


def test_a_refit_holds_the_session_lock_for_no_stopping_statistics(session_factory,
                                                                  image_folder, monkeypatch):
    """A new model's stopping statistics (over the whole pool, and the store's history) are
    computed before the refit takes the session's lock: a batch asked for meanwhile does
    not wait for them (before: computed under the lock, like the preparation's)."""
    from skpeal.labeling.stop import SessionStopping

    _, truth = image_folder
    s = session_factory(strategy="dropquery")
    free, observe = [], SessionStopping.observe

    def observed(self, *args, **kwargs):
        def take():  # another thread (a request) takes the session's lock meanwhile
            free.append(s._lock.acquire(timeout=5))
            if free[-1]:
                s._lock.release()

        t = threading.Thread(target=take)
        t.start()
        t.join()
        return observe(self, *args, **kwargs)

    monkeypatch.setattr(SessionStopping, "observe", observed)
    s.prepare()
    s.answer([(b["image_id"], truth[b["path"]]) for b in s.next_batch()])
    s.refit()
    assert free == [True, True]  # the preparation's, the refit's


def test_auto_about_to_switch_to_margin_sampling_picks_nothing_ahead(session_factory,
                                                                     image_folder, monkeypatch):
    """With the answers on screen ``auto`` may reach 10 labels per class and switch to margin
    sampling: a DropQuery made ahead would be thrown away, and it kept the pick-ahead thread
    busy for seconds at 10,000 images (before: made, and the next picks waited for it)."""
    _, truth = image_folder
    s = session_factory(strategy="auto").prepare()  # 3 classes: the switch at 30 labels
    for _ in range(5):
        s.answer([(b["image_id"], truth[b["path"]]) for b in s.next_batch()])
    s.next_batch()  # 25 labels and 5 images on screen
    calls = []
    select = lb.dropquery_select
    monkeypatch.setattr(lb, "dropquery_select", lambda *a, **k: calls.append(1) or select(*a, **k))
    assert s.pick_ahead() is False and calls == [] and not s.has_unleased()


def test_a_refit_due_while_a_batch_is_picked_ahead_waits_for_that_pick(session_factory,
                                                                      monkeypatch):
    """The DropQuery over the whole pool made ahead when the encoding ends is a batch the
    person asks for two Enters later; the first refit beside it on two cores slowed it
    past that Enter (1.5 s wait at 10,000 images under load). The refit now starts once
    that pick has ended (before: at once, beside it)."""
    from skpeal.labeling.loop import ActiveLearningLoop

    s = session_factory(strategy="dropquery").prepare()
    order, gate, picking = [], threading.Event(), threading.Event()
    select, fit = lb.dropquery_select, ActiveLearningLoop.fit

    def held(*args, **kwargs):
        if threading.current_thread().name == "skpeal-pick-ahead" and not gate.is_set():
            picking.set()
            assert gate.wait(60)
            order.append("pick")
        return select(*args, **kwargs)

    def fitted(self, *args, **kwargs):
        order.append("fit")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(lb, "dropquery_select", held)
    monkeypatch.setattr(ActiveLearningLoop, "fit", fitted)
    app = create_app(s)
    try:
        with TestClient(app) as client:
            first = client.get("/api/batch", params={"client": "a"}).json()["items"]
            _until(picking.is_set)  # the batch after the next one, being picked ahead
            r = client.post("/api/answers", json={"client": "a", "answers": [
                {"image_id": i, "label": "red"} for i in _ids(first)]})
            assert r.json()["refit"] is True
            try:  # the old code's refit starts at once, beside the pick
                _until(lambda: "fit" in order, timeout=3)
            except AssertionError:
                pass
            gate.set()
            wait_idle(client)
            assert order[:2] == ["pick", "fit"]
    finally:
        gate.set()
        app.state.worker.stop(timeout=5)


def test_the_pick_ahead_ends_with_the_worker(session_factory):
    """Stopping the refit worker stops the pick-ahead thread too: nothing writes to the
    project (thumbnails, the store) after the server has stopped and the session closed
    (before: it ran up to 0.5 s longer; a test removing the project met its thumbnails)."""
    s = session_factory(strategy="auto")
    app = create_app(s)
    try:
        with TestClient(app) as client:
            wait_idle(client)
            assert client.get("/api/batch", params={"client": "a"}).json()["items"]
            ahead = [t for t in app.state.worker.companions if t.name == "skpeal-pick-ahead"]
            assert len(ahead) == 1 and ahead[0].is_alive()
    finally:
        app.state.worker.stop(timeout=30)
    assert not ahead[0].is_alive()
