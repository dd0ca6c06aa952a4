"""The timers and server variants of ``benchmarks/bench_label_page.py``."""

import io
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from benchmarks import label_page_server as lps  # noqa: E402


def test_parse_variant():
    assert lps.parse_variant("default") == {}
    assert lps.parse_variant("switch=0.0005,threads=1,refit=off") == {
        "switch": "0.0005", "threads": "1", "refit": "off"}
    for bad in ("switch", "speed=2", "refit=on", "default,refit=off"):
        with pytest.raises(ValueError, match="variant|refit"):
            lps.parse_variant(bad)


def test_apply_settings_sets_the_switch_interval_and_threads():
    torch = pytest.importorskip("torch")
    before, threads = sys.getswitchinterval(), torch.get_num_threads()
    try:
        lps.apply_settings(lps.parse_variant("switch=0.0007,threads=1"))
        assert sys.getswitchinterval() == pytest.approx(0.0007)
        assert torch.get_num_threads() == 1
    finally:
        sys.setswitchinterval(before)
        torch.set_num_threads(threads)


def test_pick_timer_times_only_pick_requests():
    app = FastAPI()

    @app.post("/api/pick")
    def pick():
        return {"saved": True}

    @app.get("/api/status")
    def status():
        return {"ready": True}

    out = io.StringIO()
    app.add_middleware(lps.PickTimer, out=out)
    with TestClient(app) as client:
        assert client.post("/api/pick").json() == {"saved": True}
        client.get("/api/status")
        client.post("/api/pick")
    lines = [line for line in out.getvalue().splitlines() if line.startswith("pick")]
    assert len(lines) == 2
    events = [line.split()[2:] for line in out.getvalue().splitlines()
              if line.startswith("event")]
    assert [e[0] for e in events] == ["status-end"] and events[0][-1] == "ms"  # its time
    for line in lines:
        what, ms = line.split()
        assert what == "pick" and 0 < float(ms) < 10_000


def test_install_times_refits_or_turns_them_off(monkeypatch):
    from skpeal.labeling import app as web
    from skpeal.labeling.session import LabelingSession

    calls = []
    monkeypatch.setattr(LabelingSession, "refit", lambda self, **kw: calls.append(kw) or 7)
    monkeypatch.setattr(web, "create_app", web.create_app)
    for name in ("pick_ahead", "_refill", "_score_streamed", "prepare"):  # the timeline's
        monkeypatch.setattr(LabelingSession, name, getattr(LabelingSession, name))
    monkeypatch.setattr(LabelingSession, "pick_ahead", lambda self: True)
    out = io.StringIO()
    lps.install({}, out)
    assert LabelingSession.refit(object(), keep_batch=True) == 7
    assert LabelingSession.pick_ahead(object()) is True
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert calls == [{"keep_batch": True}]
    assert [line[0] for line in lines] == ["event", "refit", "event", "event", "event"]
    assert [line[2:] for line in lines if line[0] == "event"] == [
        ["refit-start"], ["refit-end"], ["pick-ahead-start"], ["pick-ahead-end", "True"]]
    assert float(lines[0][1]) == pytest.approx(time.time(), abs=60)
    lps.install({"refit": "off"}, out)
    assert LabelingSession.refit(object()) is None and len(calls) == 1


def test_the_timeline_logs_answers_and_batches_served():
    app = FastAPI()

    @app.post("/api/answers")
    def answers():
        return {"saved": 1}

    @app.get("/api/batch")
    def batch():
        return {"items": [{"image_id": 1}, {"image_id": 2}]}

    out = io.StringIO()
    app.add_middleware(lps.PickTimer, out=out)
    with TestClient(app) as client:
        client.post("/api/answers")
        client.get("/api/batch")
    # each request when it arrives and when it is answered (answers: with its time)
    assert [line.split()[2] for line in out.getvalue().splitlines()] == [
        "answers", "answers-end", "batch-asked", "batch"]
    assert out.getvalue().splitlines()[1].endswith(" ms")
    assert out.getvalue().split()[-1] == "2"
