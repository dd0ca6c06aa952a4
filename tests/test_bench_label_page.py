"""The timers and server variants of ``benchmarks/bench_label_page.py``."""

import io
import sys

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
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        what, ms = line.split()
        assert what == "pick" and 0 < float(ms) < 10_000


def test_install_times_refits_or_turns_them_off(monkeypatch):
    from skpeal.labeling import app as web
    from skpeal.labeling.session import LabelingSession

    calls = []
    monkeypatch.setattr(LabelingSession, "refit", lambda self, **kw: calls.append(kw) or 7)
    monkeypatch.setattr(web, "create_app", web.create_app)
    out = io.StringIO()
    lps.install({}, out)
    assert LabelingSession.refit(object(), keep_batch=True) == 7
    assert calls == [{"keep_batch": True}] and out.getvalue().startswith("refit ")
    lps.install({"refit": "off"}, out)
    assert LabelingSession.refit(object()) is None and len(calls) == 1
