"""``skpeal label`` with timers, for ``bench_label_page.py``: run as a script.

Usage::

    SKPEAL_BENCH_TIMES=times.txt python benchmarks/label_page_server.py VARIANT label ...

``VARIANT`` is ``default`` or comma-separated settings applied before the server starts:
``switch=SECONDS`` (:func:`sys.setswitchinterval`), ``threads=N``
(:func:`torch.set_num_threads`), ``refit=off`` (every refit returns at once, nothing
trained), ``ahead=off`` (no batch is picked ahead while the person answers),
``nagle=on`` (the server's connections keep Nagle's algorithm, as before 2026-12-06:
each reply's body then waits for the ACK of its headers), ``code=PATH`` (the skpeal of
another checkout, e.g. ``code=../main``: its server and its page, to compare two
versions in one run). The rest of the command line goes to ``skpeal``. Appended to the
file named by ``SKPEAL_BENCH_TIMES``, one line each: ``pick MS`` for every ``POST
/api/pick`` (from its arrival in the app to its last byte sent), ``refit S`` for every
refit, and ``event T WHAT`` (``T``: :func:`time.time`) for the timeline of the server:
each ``POST /api/answers`` received (``answers``) and answered (``answers-end MS``, its
time in the server), each ``GET /api/batch`` received (``batch-asked``) and answered
(``batch N``, N images), each ``GET /api/status`` answered (``status-end MS``), the start
and end of each refit, of each pick ahead, of each pick made in a request or a refit
(``refill``), of the encoding, of the preparation, of each model's installation
(``install``), of its stopping statistics (``observe``) and of each write of the pool's
features (``features-save``).
"""

from __future__ import annotations

import os
import sys
import time

SETTINGS = ("switch", "threads", "refit", "ahead", "nagle", "code")


def parse_variant(variant):
    """``"switch=0.001,refit=off"`` -> ``{"switch": "0.001", "refit": "off"}``."""
    if variant == "default":
        return {}
    settings = {}
    for item in variant.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in SETTINGS:
            raise ValueError(f"server variant {variant!r}: expected 'default' or "
                             f"comma-separated {'=, '.join(SETTINGS)}=..., got {item!r}")
        settings[key] = value
    for key, only in (("refit", "off"), ("ahead", "off"), ("nagle", "on")):
        if settings.get(key, only) != only:
            raise ValueError(f"{key}= takes only {only!r}, got {settings[key]!r}")
    if "code" in settings and not os.path.isdir(os.path.join(settings["code"], "skpeal")):
        raise ValueError(f"code= names a checkout of skpeal, got {settings['code']!r}")
    return settings


def apply_settings(settings):
    """Set the switch interval, torch's thread count and the skpeal that ``settings`` name."""
    if "code" in settings:  # before anything imports skpeal
        sys.path.insert(0, os.path.abspath(settings["code"]))
    if "switch" in settings:
        sys.setswitchinterval(float(settings["switch"]))
    if "threads" in settings:
        import torch  # only this setting needs it

        torch.set_num_threads(int(settings["threads"]))


class _Events:
    """Writes ``event T WHAT`` lines to ``out`` (``T``: :func:`time.time`)."""

    def __init__(self, out):
        self.out = out

    def __call__(self, what):
        self.out.write(f"event {time.time():.4f} {what}\n")

    def around(self, cls, name, what=None):
        """Wrap ``cls.name`` with ``WHAT-start`` and ``WHAT-end`` events."""
        fn = getattr(cls, name)
        what = what or name

        def timed(*args, **kwargs):
            self(f"{what}-start")
            result = "error"
            try:
                result = fn(*args, **kwargs)
                return result
            finally:
                self(f"{what}-end{f' {result}' if isinstance(result, bool) else ''}")

        setattr(cls, name, timed)


class PickTimer:
    """ASGI wrapper: writes ``pick MS`` for every ``POST /api/pick`` to ``out``."""

    def __init__(self, app, out):
        self.app, self.out = app, out
        self.event = _Events(out)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in ("/api/answers", "/api/status"):
            return await self._logged(scope, receive, send, scope["path"][5:])
        if scope["type"] == "http" and scope["path"] == "/api/batch":
            return await self._batch(scope, receive, send)
        if scope["type"] != "http" or scope["path"] != "/api/pick":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.out.write(f"pick {1000 * (time.perf_counter() - t0):.3f}\n")

        await self.app(scope, receive, timed_send)

    async def _logged(self, scope, receive, send, what):
        """``WHAT`` when the request arrives, ``WHAT-end MS`` at its last byte sent."""
        t0 = time.perf_counter()
        if what != "status":  # polled every 0.5 s: only its end, with its time
            self.event(what)

        async def logged_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.event(f"{what}-end {1000 * (time.perf_counter() - t0):.0f} ms")

        await self.app(scope, receive, logged_send)

    async def _batch(self, scope, receive, send):
        body = []
        self.event("batch-asked")

        async def logged_send(message):
            await send(message)
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.event(f"batch {b''.join(body).count(b'image_id')}")

        await self.app(scope, receive, logged_send)


def install(settings, out):
    """Patch the app factory (pick timer), the session's refit (timer, or off), its pick
    ahead (off) and the listening socket (Nagle on); log the timeline's events."""
    from skpeal.labeling import app as web
    from skpeal.labeling.session import LabelingSession

    create_app, refit = web.create_app, LabelingSession.refit
    event = _Events(out)
    from skpeal.labeling.project_features import ProjectFeatures
    from skpeal.labeling.stop import SessionStopping

    for cls, name, what in (
            (LabelingSession, "pick_ahead", "pick-ahead"), (LabelingSession, "_refill", "refill"),
            (LabelingSession, "_score_streamed", "encoding"),
            (LabelingSession, "prepare", "prepare"), (LabelingSession, "_install", "install"),
            (ProjectFeatures, "save", "features-save"), (SessionStopping, "observe", "observe")):
        if hasattr(cls, name):  # code=PATH: an older checkout may lack one
            event.around(cls, name, what)

    def timed_app(*args, **kwargs):
        app = create_app(*args, **kwargs)
        app.add_middleware(PickTimer, out=out)
        return app

    def timed_refit(self, *args, **kwargs):
        if settings.get("refit") == "off":
            return None
        t0 = time.perf_counter()
        event("refit-start")
        try:
            return refit(self, *args, **kwargs)
        finally:
            out.write(f"refit {time.perf_counter() - t0:.3f}\n")
            event("refit-end")

    web.create_app = timed_app
    LabelingSession.refit = timed_refit
    if settings.get("ahead") == "off":
        LabelingSession.pick_ahead = lambda self, *args, **kwargs: False
    if settings.get("nagle") == "on":
        import socket

        def listen(host, port):  # proto 0: asyncio leaves TCP_NODELAY off
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            return sock

        web._listen = listen


def main(argv):
    settings = parse_variant(argv[0])
    apply_settings(settings)
    out = open(os.environ["SKPEAL_BENCH_TIMES"], "a", buffering=1)  # noqa: SIM115
    install(settings, out)
    from skpeal.cli import main as skpeal

    return skpeal(argv[1:])


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main(sys.argv[1:]))
