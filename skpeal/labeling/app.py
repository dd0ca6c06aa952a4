"""The web app of ``skpeal label``: FastAPI over a :class:`~skpeal.labeling.LabelingSession`.

The only module of skpeal that imports the web stack (FastAPI, Starlette, uvicorn; the
``label`` extra). The page and its assets ship in ``skpeal/labeling/static`` (no CDN).

HTTP API (JSON; errors are ``{"detail": "<message>"}`` with a 4xx status and change
nothing)::

    GET  /                      the page
    GET  /api/status            LabelingSession.status() + "busy" (a refit is running or due)
    GET  /api/batch?client=ID   {"ready", "busy", "items": [{image_id, file, suggestion,
                                probability, round, picked, pick, preselect, reopened}]}:
                                this client's batch, with the picks stored so far
    POST /api/pick              {"client": ID, "image_id": 3, "label": "cat" or null,
                                "seq": 7} -> {"saved": true, "pick_id": n}: committed before
                                it answers; ``seq`` (optional) is the page's count of its
                                picks (each pick goes in its own request, side by side): a
                                pick that arrives after a later pick of its image is not
                                stored (``pick_id`` null: the later one is in force); or
                                {"client": ID, "picks": [{"image_id", "label", "seq"}, ...]}
                                -> {"saved": true, "pick_ids": [...]} (one transaction)
    POST /api/answers           {"client": ID, "answers": [{"image_id": 3, "label": "cat"},
                                {"image_id": 4, "label": null}], "release_rest": false}
                                (null = skip) -> {"saved": n, "row_ids": [...], "refit":
                                bool}; a refit starts in the background when the client's
                                batch is done (``release_rest``: give its unanswered images
                                back, so the batch is done)
    POST /api/undo              {"client": ID, "seq": 8} -> {"undone": LabelingSession.undo()
                                or null}; ``seq`` (optional): the client's picks from it on
                                came after the undo, which leaves them alone
    POST /api/refit             start a refit now
    GET  /api/image/{id}        the thumbnail (?size=192|384|768; ?full=1: the original
                                file), by id only
    GET  /api/export.csv        the labels in force as CSV
    GET  /api/export/NAME       folders.zip (<class>/<file>), label-studio.json (tasks with
                                predictions), adapter.safetensors (the current model's)

An answer or an undo of an answer sent while the model is still loading gets 503 with the
header ``X-Skpeal-Loading: 1`` (and ``Retry-After``) after ``model_wait`` seconds: nothing
changed, the picks are stored already; send it again (not for a project whose first batch
needed no model: served without it meanwhile, see :mod:`skpeal.labeling._starting`).

With ``ml_backend_port`` (``skpeal label --ml-backend-port N``), :func:`serve` also serves
Label Studio's ML backend protocol over the session on that port
(:func:`ml_backend_for_session`).

Safety: bind to 127.0.0.1 by default (then the ``Host`` header must name the loopback,
against DNS rebinding). With any other host, :func:`serve` generates an access token that
every request must carry (``?token=``, the ``X-Skpeal-Token`` header, or the cookie set
when the page is opened with the token). Bodies over ``max_body`` bytes get 413, bodies
that are not JSON 400 or 415, bad fields 422, unknown ids 404.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from importlib import resources

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ._http import check_id, disk_full, guard, read_json, served_path
from .labelstudio import SessionBackend, ml_backend_app
from .thumbnails import THUMBNAIL_SIZES, ThumbnailCache

__all__ = ["LOOPBACK_HOSTS", "check_ports", "create_app", "ml_backend_for_session", "serve"]

#: Host names that mean "this machine only".
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_MAX_CLIENT = 128
_PAGE_SIZE = 384  # the thumbnail size the page loads first (img.src)
#: The detail of a 503 to an answer or undo sent before the model is loaded.
LOADING_MESSAGE = ("the model is still loading; your picks are saved: send this again in a "
                   "moment (the page does it by itself)")


class RefitWorker:
    """A background thread that prepares the session, then refits when asked.

    A request while a refit runs queues exactly one more refit, so labels given
    during a refit are always trained on. Errors are kept in ``error`` (and in the
    session's ``state``), never raised into the web server.
    """

    def __init__(self, session, *, on_batch=None, before_refit=None):
        self.session = session
        self.on_batch = on_batch
        self.before_refit = before_refit  # e.g. wait for the batch being picked ahead
        self.error = None
        self._want = threading.Event()
        self._keep_batch = False
        self._stop = False
        self._busy = threading.Event()
        self._busy.set()  # preparing
        self._thread = threading.Thread(target=self._loop, name="skpeal-refit", daemon=True)
        self.companions = []  # threads that end with this one: joined by stop() too

    def start(self):
        self._thread.start()
        return self

    @property
    def busy(self) -> bool:
        """Preparing, refitting, or a refit is due."""
        return self._busy.is_set() or self._want.is_set()

    def request(self):
        """Ask for a refit (after the current one, if one runs)."""
        self._want.set()

    def wait_idle(self, timeout):
        """Wait up to ``timeout`` seconds for the refit to end; whether it did."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.busy

    def _failed(self, what, exc):
        """Keep the error for /api/status (the page shows it) in words a person can act on."""
        if disk_full(exc):
            self.error = (f"{what} failed: the disk is full ({exc}). Your labels are saved; "
                          "free some space: the next submit (or POST /api/refit) tries again")
        else:
            self.error = f"{what} failed: {exc}"
        self.session.state["error"] = self.error

    def _new_batch(self):
        """Tell ``on_batch`` (e.g. warm the thumbnails of the next batch); never raises."""
        if self.on_batch is not None:
            try:
                self.on_batch()
            except Exception:  # a thumbnail that cannot be made is reported when asked for
                pass

    def stop(self, timeout=None):
        self._stop = True
        self._want.set()
        for thread in [self._thread, *self.companions]:  # e.g. the pick ahead's
            thread.join(timeout)

    def _loop(self):
        try:
            if getattr(self.session, "starting", False):  # a restart: load the model here
                self.session.start()
            elif not self.session.ready:
                self.session.prepare()
            if self.session.stale:  # labels given after the last refit (a killed refit)
                self._keep_batch = True  # ... but the person sees the batch they had
                self._want.set()
        except Exception as exc:  # shown on the page; the server keeps running
            self._failed("preparing the session", exc)
        finally:  # busy until the next batches are asked for (thumbnails, pick ahead)
            self._new_batch()
            self._busy.clear()
        while True:
            self._want.wait()
            if self._stop:
                return
            self._busy.set()
            self._want.clear()
            try:
                if self.before_refit is not None:
                    self.before_refit()
                keep, self._keep_batch = self._keep_batch, False
                if self.session.has_labels():
                    self.session.refit(keep_batch=keep)
                self.error = None
            except Exception as exc:
                self._failed(f"the refit of round {self.session.round + 1}", exc)
            finally:
                if not self._want.is_set():
                    self._new_batch()
                self._busy.clear()


#: The longest a refit waits for a pick ahead that runs when it is due (seconds).
REFIT_WAITS_FOR_PICK = 10.0


class _PickAhead:
    """A thread that picks and stores the next batch (:meth:`LabelingSession.pick_ahead`)
    when a batch is served; it ends with ``worker`` (the refit worker).

    It runs at once, also while the worker refits: the person answers the batch on
    screen meanwhile, and the batch after Enter is then stored when it is asked for
    (handed out without a pick in the request, nor a wait for the refit). A refit that
    ends later replaces it with its new model's pick, unless it was handed out first.
    The worker asks for a pick too when it has prepared or refitted (the batch after the
    one it stored, once that one is served), and a refit that is due while a pick runs
    waits for it (:meth:`wait_running`, at most :data:`REFIT_WAITS_FOR_PICK` seconds).
    """

    def __init__(self, session, on_stored=None):
        self.session, self.worker, self.on_stored = session, None, on_stored
        self._want = threading.Event()
        self._running = False

    def start(self, worker):
        self.worker = worker
        thread = threading.Thread(target=self._loop, name="skpeal-pick-ahead", daemon=True)
        getattr(worker, "companions", []).append(thread)  # stopped with the worker
        thread.start()

    def request(self):
        self._want.set()

    @property
    def ready(self) -> bool:
        """Whether the next batch is stored or its pick made (asking for it is instant)."""
        return self.session.picked_ahead()

    @property
    def idle(self) -> bool:
        """Whether no pick ahead is asked for nor running."""
        return not self._want.is_set() and not self._running

    def wait_running(self, timeout=REFIT_WAITS_FOR_PICK):
        """Wait up to ``timeout`` seconds for a pick ahead that runs now to end (the refit
        worker, before it trains: the batch being picked is one the person will ask for,
        e.g. the DropQuery over the whole pool once encoded, and on two cores a refit
        beside it slowed it past the person's next Enter)."""
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            time.sleep(0.02)

    def _loop(self):
        while not getattr(self.worker, "_stop", True):
            if not self._want.wait(0.5):
                continue
            self._running = True
            self._want.clear()
            try:
                if self.session.pick_ahead() and self.on_stored is not None:
                    self.on_stored()  # e.g. the thumbnails of the batches stored ahead
            except Exception:  # the pick itself (after the submit) reports it
                pass
            finally:
                self._running = False


def _static_dir():
    return resources.files("skpeal.labeling") / "static"


def _bad(status, message):
    raise HTTPException(status_code=status, detail=message)


def _loading():
    """503: the model is still loading; nothing changed (the page sends it again)."""
    raise HTTPException(status_code=503, detail=LOADING_MESSAGE,
                        headers={"Retry-After": "2", "X-Skpeal-Loading": "1"})


def _client_of(value):
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_CLIENT:
        _bad(422, f"client must be a non-empty string of at most {_MAX_CLIENT} characters")
    return value


def _seq_of(body, where=""):
    """The optional ``seq`` of a pick or undo: the page's count of its picks."""
    seq = body.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)
                            or not 0 <= seq < 2 ** 53):
        shown = "a larger integer" if isinstance(seq, int) else repr(seq)[:40]
        _bad(422, f"{where}seq must be an integer from 0 to 2**53 - 1, got {shown}")
    return seq


def create_app(session, *, token=None, allowed_hosts=None, max_body=65536, worker=None,
               fresh_wait=0.0, model_wait=2.0):
    """The FastAPI application over ``session``.

    Parameters
    ----------
    session : LabelingSession
    token : str or None, default=None
        When given, every request must carry it (see the module docstring).
    allowed_hosts : list of str or None, default=None
        Accepted ``Host`` header names (None: any).
    max_body : int, default=65536
        Largest accepted request body in bytes.
    worker : RefitWorker, optional
        Started here when not given (it prepares the session in the background, and
        makes the thumbnails of every new batch before the page asks for them).
    fresh_wait : float, default=0.0
        When no batch is stored ahead nor its pick computed (see
        :meth:`LabelingSession.pick_ahead`: the next batch is picked in the background as
        soon as a batch is served, also while a refit runs), the seconds a request for
        the next batch waits for a running refit: when the refit ends sooner, its model
        picks the batch; else the current model does (the refit's model picks the one
        after, and replaces the batches stored ahead). 0 (the default since 2026-12-07;
        0.3 before): the person never waits for a refit.
    model_wait : float, default=2.0
        The seconds an answer or undo sent while the model is still loading (a restart)
        or the session still preparing waits for it; then the answer is 503 with the
        ``X-Skpeal-Loading: 1`` header (nothing changed; the picks are saved already),
        and the page sends it again by itself.

    Returns
    -------
    app : fastapi.FastAPI
        ``app.state.worker`` is the refit worker; stop it with ``app.state.worker.stop()``.
        ``app.state.ahead.ready``: whether the next batch is stored or its pick made
        already (then a batch asked for during a refit is given at once, without
        ``fresh_wait``).
    """
    app = FastAPI(title="skpeal label", docs_url=None, redoc_url=None, openapi_url=None)
    guard(app)  # 431 for oversized headers, 507 on a full disk
    session.release()  # leases of tabs from before a restart are gone with them
    server_id = secrets.token_hex(8)  # a page notices a restarted server by its change
    thumbs = ThumbnailCache(session.project / "thumbs")

    def warm_thumbnails():
        """Make the thumbnails of the pending images before the page asks for them."""
        for p in session.store.pending():
            path = session.image_path(p["image_id"])
            if path is not None and served_path(path) is not None:
                thumbs.get(p["image_id"], path, _PAGE_SIZE)

    ahead = _PickAhead(session, on_stored=warm_thumbnails)

    def new_batch():
        warm_thumbnails()
        ahead.request()  # the batch after the stored one, while nothing runs

    worker = worker or RefitWorker(session, on_batch=new_batch,
                                   before_refit=ahead.wait_running).start()
    app.state.worker = worker
    ahead.start(worker)
    app.state.ahead = ahead
    app.state.session = session
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    if token is not None:
        @app.middleware("http")
        async def check_token(request: Request, call_next):
            given = (request.query_params.get("token")
                     or request.headers.get("x-skpeal-token")
                     or request.cookies.get("skpeal_token") or "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong access token: open the URL "
                                               "printed by 'skpeal label'"}, status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie("skpeal_token", token, httponly=True, samesite="strict")
            return response

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse((_static_dir() / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=str(_static_dir())), name="static")

    async def wait_for_model():
        """Wait a little for a model loading or preparing, then 503 (the page sends again)."""
        if getattr(session, "starting", False) and not getattr(session, "without_model", False):
            if not await run_in_threadpool(session.wait, model_wait):
                _loading()
            if session.session is None:
                _bad(409, f"the session could not be opened: {session.error}")
        elif not session.ready and worker.busy:
            await run_in_threadpool(worker.wait_idle, model_wait)
        if not session.ready:
            if worker.busy:
                _loading()
            _bad(409, "the session could not be prepared: "
                      f"{worker.error or session.state.get('error')}")

    def status_payload():
        st = session.status() if session.ready else {
            "state": dict(session.state), "classes": list(session.classes),
            "n_images": session.n_images, "rounds": [], "counts": {}}
        st["server_id"] = server_id
        st["ready"] = session.ready
        st["busy"] = worker.busy
        st["error"] = worker.error or session.state.get("error")
        return st

    @app.get("/api/status")
    def status():
        return status_payload()

    @app.get("/api/batch")
    def batch(client: str = ""):
        _client_of(client)
        if not session.ready:
            return {"ready": False, "busy": worker.busy, "items": []}
        if worker.busy and not session.holds(client) and not session.streaming \
                and not session.has_unleased() and not ahead.ready:
            # no batch picked ahead (by the last refit): a refit that ends soon gives the
            # next one; a longer one does not keep the person waiting: the current model
            # picks it (the refit's model the one after)
            worker.wait_idle(fresh_wait)
        items = session.next_batch(client=client)
        if items:
            ahead.request()  # the batch after this one, while the person answers
        keys = ("image_id", "suggestion", "probability", "round", "picked", "pick",
                "preselect", "reopened")
        return {"ready": True, "busy": worker.busy, "round": session.round,
                "preselect_threshold": session.preselect_threshold,
                "items": [{"file": os.path.basename(it["path"]), **{k: it[k] for k in keys}}
                          for it in items]}

    @app.post("/api/pick")
    async def pick(request: Request):
        body = await read_json(request, max_body)
        single = isinstance(body, dict) and "picks" not in body
        if not isinstance(body, dict) or set(body) - (
                {"client", "image_id", "label", "seq"} if single else {"client", "picks"}) \
                or (single and "image_id" not in body):
            _bad(422, "the body must be a JSON object {\"client\": ..., \"image_id\": int, "
                      "\"label\": str or null, \"seq\": int} or {\"client\": ..., "
                      "\"picks\": [{\"image_id\": int, \"label\": str or null, \"seq\": int}, "
                      "...]} (seq is optional)")
        client = _client_of(body.get("client"))
        given = [body] if single else body["picks"]
        if not isinstance(given, list) or not given:
            _bad(422, "picks must be a non-empty list of {\"image_id\": int, \"label\": str "
                      "or null}")
        parsed = []
        for k, a in enumerate(given):
            where = "" if single else f"picks[{k}]: "
            if not single and (not isinstance(a, dict) or set(a) - {"image_id", "label", "seq"}
                               or "image_id" not in a):
                _bad(422, f"{where}must be an object with image_id and label, got {a!r}")
            image_id, label, seq = a["image_id"], a.get("label"), _seq_of(a, where)
            if isinstance(image_id, bool) or not isinstance(image_id, int):
                _bad(422, f"{where}image_id must be an integer, got {image_id!r}")
            if session.image_path(image_id) is None:
                _bad(404, f"{where}unknown image id {image_id}")
            if label is not None and label not in session.classes:
                _bad(422, f"{where}label {label!r} is not one of the classes "
                          f"{session.classes}")
            parsed.append((image_id, label, seq))
        try:
            # committed here, in the event loop: in the threadpool (with the picks that
            # arrived meanwhile in one commit) a pick took longer on the loaded 2-core
            # machine (the hop to a thread and back costs more than the fsync it spares
            # the loop: benchmarks/README.md, bench_label_page)
            pick_ids = session.pick_many(parsed, client=client)  # committed
        except ValueError as exc:
            _bad(409, str(exc))
        if single:
            return {"saved": True, "pick_id": pick_ids[0]}
        return {"saved": True, "pick_ids": pick_ids}

    @app.post("/api/answers")
    async def answers(request: Request):
        body = await read_json(request, max_body)
        if not isinstance(body, dict):
            _bad(422, "the body must be a JSON object {\"client\": ..., \"answers\": [...]}")
        client = _client_of(body.get("client"))
        release_rest = body.get("release_rest", False)
        if not isinstance(release_rest, bool):
            _bad(422, f"release_rest must be true or false, got {release_rest!r}")
        given = body.get("answers")
        if not isinstance(given, list) or not given:
            _bad(422, "answers must be a non-empty list of {\"image_id\": int, \"label\": str "
                      "or null}")
        parsed = []
        for k, a in enumerate(given):
            if not isinstance(a, dict) or set(a) - {"image_id", "label"} or "image_id" not in a:
                _bad(422, f"answers[{k}] must be an object with image_id and label, got {a!r}")
            image_id, label = a["image_id"], a.get("label")
            if isinstance(image_id, bool) or not isinstance(image_id, int):
                _bad(422, f"answers[{k}].image_id must be an integer, got {image_id!r}")
            check_id(image_id, f"answers[{k}]: image id")
            if session.image_path(image_id) is None:
                _bad(404, f"answers[{k}]: unknown image id {image_id}")
            if label is not None and label not in session.classes:
                _bad(422, f"answers[{k}]: label {label!r} is not one of the classes "
                          f"{session.classes}")
            parsed.append((image_id, label))
        await wait_for_model()
        row_ids = session.answer(parsed, client=client)  # committed before we answer
        if release_rest:
            session.release(client)
        refit = not session.holds(client) and session.has_labels()
        if refit:
            worker.request()
        return {"saved": len(row_ids), "row_ids": row_ids, "refit": refit}

    @app.post("/api/leave")
    async def leave(request: Request):
        """The page is going away (pagehide): its batch goes to the next tab first."""
        body = await read_json(request, max_body)
        if not isinstance(body, dict):
            _bad(422, "the body must be a JSON object {\"client\": ...}")
        session.leave(_client_of(body.get("client")))
        return {}

    @app.post("/api/undo")
    async def undo(request: Request):
        body = await read_json(request, max_body)
        if not isinstance(body, dict):
            _bad(422, "the body must be a JSON object {\"client\": ...}")
        client, seq = _client_of(body.get("client")), _seq_of(body)
        if getattr(session, "loading", False):  # a restart: a pick is undone from the store
            undone = session.undo_pick(client=client, seq=seq)
            if undone is not None:
                return {"undone": undone}
        await wait_for_model()
        return {"undone": session.undo(client=client, seq=seq)}

    @app.post("/api/refit")
    def refit():
        if not session.has_labels():
            _bad(409, "no label yet: label a batch first")
        worker.request()
        return {"refit": True}

    @app.get("/api/image/{image_id}")
    def image(image_id: int, full: int = 0, size: int = THUMBNAIL_SIZES[0]):
        path = session.image_path(check_id(image_id))
        if path is None:
            _bad(404, f"unknown image id {image_id}")
        if served_path(path) is None:  # re-checked now: replaced by a symlink, or gone
            _bad(404, f"image {image_id} ({os.path.basename(path)}) is no longer the "
                      "registered file (moved, deleted or replaced by a link)")
        if full:
            return FileResponse(path)
        try:
            if size not in THUMBNAIL_SIZES:
                _bad(422, f"size must be one of {list(THUMBNAIL_SIZES)}, got {size}")
            data = thumbs.get(image_id, path, size)
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            _bad(422, f"image {image_id} ({os.path.basename(path)}) cannot be read: {exc}")
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/export.csv")
    def export_csv():
        return PlainTextResponse(session.export_csv(), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          'attachment; filename="labels.csv"'})

    @app.get("/api/export/{name}")
    def export_other(name: str):
        """The page's other export buttons (as ``skpeal export --format``)."""
        media = {"folders.zip": "application/zip", "label-studio.json": "application/json",
                 "adapter.safetensors": "application/octet-stream"}
        if name not in media:
            _bad(404, f"unknown export {name!r}; one of {sorted(media)}")
        if getattr(session, "starting", False) and (not session.wait()
                                                    or session.session is None):
            _bad(409, "the model is still loading (or could not be loaded: see the status); "
                      "try again in a moment")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, name)
            if name == "folders.zip":
                session.export_folder(os.path.join(tmp, "labels"))
                shutil.make_archive(out[:-4], "zip", tmp, "labels")
            elif name == "label-studio.json":
                if not session.ready:
                    _bad(409, "the session is still preparing; try again when the first batch "
                              "shows")
                session.export_label_studio(out)
            else:
                try:
                    session.export_adapter(out)
                except RuntimeError as exc:
                    _bad(409, str(exc))
            with open(out, "rb") as f:
                data = f.read()
        return Response(data, media_type=media[name],
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return app


# ----------------------------------------------------------------------- Label Studio backend
def ml_backend_for_session(session, *, token=None, allowed_hosts=None):
    """Label Studio's ML backend protocol over a session (a FastAPI app).

    The predictor is :class:`skpeal.labeling.labelstudio.SessionBackend`: ``/predict``
    gives the session's current suggestions, ``/webhook`` adds Label Studio's annotations
    as labels (client ``"label-studio"``), "Start Training" refits. Serve it with uvicorn,
    or through ``skpeal label ... --ml-backend-port 9090``.

    Parameters
    ----------
    session : LabelingSession
        The session (prepared before the first ``/predict``).
    token : str, optional
        Require HTTP basic auth with user ``skpeal`` and this password (Label Studio's
        "Basic Authentication" when connecting the model sends it; it cannot send the
        page's ``?token=``). Give it whenever the server listens beyond the loopback.
    allowed_hosts : list of str, optional
        Accepted ``Host`` headers (against DNS rebinding on the loopback).

    Returns
    -------
    app : fastapi.FastAPI
    """
    auth = None if token is None else ("skpeal", token)
    # the backend also gives Label Studio's webhook this auth at /setup (it sends none)
    app = ml_backend_app(SessionBackend(session, basic_auth=auth), basic_auth=auth)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app


def _listen(host, port):
    # IPPROTO_TCP, not 0: asyncio then turns Nagle's algorithm off on every connection
    # (TCP_NODELAY); without it a reply's body waited ~40 ms for the ACK of its headers
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    return sock


def check_ports(port, ml_backend_port=None):
    """Refuse a port outside 0..65535 (0: any free port) with a message naming it."""
    for name, value in (("port", port), ("ml_backend_port", ml_backend_port)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= 65535):
            raise ValueError(f"{name} must be a port number from 0 to 65535 (0: any free "
                             f"port), got {value!r}")


def serve(session, *, host="127.0.0.1", port=8000, token=None, open_message=print,
          ml_backend_port=None):
    """Run the app with uvicorn until interrupted.

    Parameters
    ----------
    session : LabelingSession
    host : str, default="127.0.0.1"
        Any host other than the loopback requires the access token.
    port : int, default=8000
        0 picks a free port.
    token : str, optional
        The access token for a non-loopback host (generated when None).
    open_message : callable, default=print
        Receives the line with the URL.
    ml_backend_port : int, optional
        Also serve Label Studio's ML backend (:func:`ml_backend_for_session`) on this
        port of the same host; beyond the loopback it requires basic auth with user
        ``skpeal`` and the access token as password.
    """
    check_ports(port, ml_backend_port)
    loopback = host in LOOPBACK_HOSTS
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)
    if loopback:
        token = None
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    hosts = [h for h in LOOPBACK_HOSTS] + ["[::1]"] if loopback else None
    app = create_app(session, token=token, allowed_hosts=hosts)
    ml_server = ml_thread = None
    if ml_backend_port is not None:
        ml_sock = _listen(host, ml_backend_port)
        ml_port = ml_sock.getsockname()[1]
        ml_server = uvicorn.Server(uvicorn.Config(
            ml_backend_for_session(session, token=token, allowed_hosts=hosts),
            log_level="warning"))
        ml_thread = threading.Thread(target=ml_server.run, kwargs={"sockets": [ml_sock]},
                                     name="skpeal-ml-backend", daemon=True)
        ml_thread.start()
        shown_ml = f"[{host}]" if ":" in host else host
        auth = f"; Basic Authentication: user skpeal, password {token}" if token else ""
        open_message(f"skpeal label: Label Studio ML backend at http://{shown_ml}:{ml_port}"
                     f"{auth}")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    open_message(f"skpeal label: open {url}   (Ctrl+C stops; labels are saved as you go)")
    config = uvicorn.Config(app, log_level="warning")
    server = uvicorn.Server(config)
    if getattr(session, "starting", False):  # a restart whose project cannot be opened stops

        def stop(exc):
            server.should_exit = True

        session.on_build_error = stop
        if session.build_error is not None:
            server.should_exit = True
    try:
        server.run(sockets=[sock])
    finally:
        app.state.worker.stop(timeout=1)
        if ml_server is not None:
            ml_server.should_exit = True
            ml_thread.join(timeout=5)
    return url
