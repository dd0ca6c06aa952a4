"""The labelling session with the low-budget strategies (issue 22)."""

import pytest

from skpeal.strategies import lowbudget as lb

from .conftest import CLASSES


@pytest.mark.parametrize("strategy", [lb.auto_sampling, lb.typiclust_sampling])
def test_session_runs_low_budget_strategies_and_keeps_every_label(session_factory,
                                                                   image_folder, strategy):
    _, truth = image_folder
    s = session_factory(strategy=strategy)
    s.prepare()
    assert s.loop.query_function() is strategy  # not wrapped in PCB
    given = {}
    for _ in range(2):
        batch = s.next_batch()
        assert len({b["image_id"] for b in batch}) == len(batch) == 5
        assert not set(b["image_id"] for b in batch) & set(given)
        for item in batch:
            s.label(item["image_id"], truth[item["path"]])
            given[item["image_id"]] = truth[item["path"]]
        s.refit()
    assert s.store.labelled() == given
    assert set(given.values()) <= set(CLASSES)


def test_session_defaults_to_auto_and_remembers_a_named_strategy(session_factory):
    s = session_factory()
    assert s.loop.strategy is lb.auto_sampling
    s.close()
    s = session_factory(strategy="margin")
    assert s.loop.query_function().strategy.__name__ == "margin_sampling"  # PCB-wrapped
    s.close()
    s = session_factory()  # reopened without strategy=: the one last used
    assert s.loop.strategy.__name__ == "margin_sampling"
    s.close()
    with pytest.raises(ValueError, match="nope"):
        session_factory(strategy="nope")


def test_skpeal_label_passes_its_strategy(monkeypatch, image_folder, tmp_path):
    from skpeal import cli

    args = cli._parser().parse_args(["label", "photos", "--classes", "cat", "dog"])
    assert args.strategy is None  # the session's default: the project's, else auto
    seen = {}

    class Stop(Exception):
        pass

    def fake_session(*a, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(cli, "LabelingSession", fake_session)
    folder, _ = image_folder
    with pytest.raises(Stop):
        cli._label(cli._parser().parse_args(["label", str(folder), "--classes", *CLASSES,
                                             "--project", str(tmp_path / "p")]))
    assert seen["strategy"] is None
    cli._parser().parse_args(["label", "photos", "--strategy", "typiclust"])
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["label", "photos", "--strategy", "nope"])


def test_a_remembered_strategy_that_is_not_registered_warns_and_uses_auto(session_factory):
    from skpeal.strategies import register_strategy, unregister_strategy

    register_strategy("mine-for-a-test", score=lambda p: p.min(axis=1))
    try:
        session_factory(strategy="mine-for-a-test").close()
    finally:
        unregister_strategy("mine-for-a-test")
    with pytest.warns(UserWarning, match="mine-for-a-test"):
        s = session_factory()
    assert s.loop.strategy is lb.auto_sampling


def _answer_batch(s, truth):
    for item in s.next_batch():
        s.label(item["image_id"], truth[item["path"]])


def test_pick_ahead_computes_the_next_pick_once_and_it_is_the_same(tmp_path, image_folder,
                                                                  monkeypatch):
    """The batch after Enter is the one picked ahead (no second DropQuery), and the same
    batch a session without a pick ahead gives (issue 23 item 11)."""
    from skpeal.labeling import LabelingSession

    from .conftest import tiny_estimator

    folder, truth = image_folder
    calls = []
    select = lb.dropquery_select
    monkeypatch.setattr(lb, "dropquery_select", lambda *a, **k: calls.append(1) or select(*a, **k))
    batches = []
    for ahead in (True, False):
        s = LabelingSession(tmp_path / f"project-{ahead}", folder, CLASSES,
                            estimator=tiny_estimator(), batch_size=5)
        try:
            s.prepare()
            first = s.next_batch()
            if ahead:
                assert s.pick_ahead()
                n = len(calls)
                assert s.pick_ahead()  # kept: not computed again
                assert len(calls) == n
            for item in first:
                s.label(item["image_id"], truth[item["path"]])
            n = len(calls)
            batches.append([b["image_id"] for b in s.next_batch()])
            assert len(calls) == n + (0 if ahead else 1)  # picked ahead: no DropQuery now
            assert not set(batches[-1]) & {b["image_id"] for b in first}
        finally:
            s.close()
    assert batches[0] == batches[1]


def test_pick_ahead_is_exact_when_the_state_changed(session_factory, image_folder,
                                                    monkeypatch):
    """A pick ahead made before other images went on screen is not reused."""
    _, truth = image_folder
    s = session_factory(strategy="dropquery")
    s.prepare()
    s.next_batch(client="a")
    assert s.pick_ahead()
    calls = []
    select = lb.dropquery_select
    monkeypatch.setattr(lb, "dropquery_select", lambda *a, **k: calls.append(1) or select(*a, **k))
    second = s.next_batch(client="b")  # a second tab: the rows picked ahead, not recomputed
    assert calls == []
    assert s.pick_ahead()  # now without a's and b's images: a new pick
    assert calls == [1]
    assert not {b["image_id"] for b in second} & {b["image_id"] for b in s.next_batch("a")}


def test_pick_ahead_does_nothing_for_strategies_that_keep_no_pick(session_factory):
    s = session_factory(strategy="margin")
    assert not s.pick_ahead()  # not prepared
    s.prepare()
    s.next_batch()
    assert not s.pick_ahead()


def test_a_refit_holds_the_session_lock_for_no_pick(session_factory, image_folder,
                                                   monkeypatch):
    """A batch handed out while the refit picks (a submit on the page) changes the images
    left: the refit picks again outside the lock, never under it, so that the page's
    requests do not wait for its query (before: a DropQuery under the lock)."""
    import threading

    _, truth = image_folder
    s = session_factory(strategy="dropquery")
    s.prepare()
    _answer_batch(s, truth)

    def lock_is_held():
        got = []

        def probe():
            got.append(s._lock.acquire(blocking=False))
            if got[0]:
                s._lock.release()

        t = threading.Thread(target=probe)
        t.start()
        t.join()
        return not got[0]

    held, served = [], []
    select = lb.dropquery_select

    def spy(*a, **k):
        if threading.current_thread() is threading.main_thread():  # the refit's picks
            held.append(lock_is_held())
            if not served:  # a second tab asks for a batch meanwhile
                t = threading.Thread(target=lambda: served.append(s.next_batch(client="b")))
                t.start()
                t.join()
        return select(*a, **k)

    monkeypatch.setattr(lb, "dropquery_select", spy)
    s.refit()
    assert len(served[0]) == 5 and held and not any(held)
    fresh = [p["image_id"] for p in s.store.pending() if p["client"] is None]
    assert len(fresh) == 5 and not set(fresh) & {b["image_id"] for b in served[0]}
