"""Label Studio's ML backend protocol over any predictor: ``/health``, ``/setup``,
``/predict``, ``/webhook`` (:func:`ml_backend_router`, :func:`ml_backend_app`).

Needs the ``label`` extra (FastAPI), imported inside the functions so that the rest of
:mod:`skpeal.labeling.labelstudio` works without it. (No ``from __future__ import
annotations`` here: FastAPI reads the endpoints' ``request: Request`` annotations at run
time.)
"""

import hmac
import logging
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import LabelingInterface, _class_strings, parse_labeling_config
from .tasks import ID_KEY, _choice_result, _label_of, _task_name

__all__ = ["PredictorNotReady", "TaskImage", "ml_backend_app", "ml_backend_router"]

_TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
_DELETE_EVENTS = ("ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
_log = logging.getLogger("skpeal.labeling.labelstudio")


def _deleted_ids(data):
    """Annotation ids of a deletion event (``annotations: [{"id": ...}]`` or ``annotation``)."""
    anns = data.get("annotations")
    if anns is None and isinstance(data.get("annotation"), Mapping):
        anns = [data["annotation"]]
    if not isinstance(anns, list) or not anns:
        raise _http_error(422, f"{data.get('action')} needs 'annotations': a list of "
                               "{\"id\": ...} objects")
    ids = []
    for a in anns:
        v = a.get("id") if isinstance(a, Mapping) else a
        if isinstance(v, bool) or not isinstance(v, int):
            raise _http_error(422, f"a deleted annotation id must be an integer, got {v!r}")
        ids.append(v)
    return ids
_MAX_BODY = 32 * 2**20  # 32 MiB: Label Studio sends task data, not images


class PredictorNotReady(RuntimeError):
    """The predictor has no model yet (e.g. the session is still encoding its pool).

    The ML backend answers ``/predict`` with 503 and a ``Retry-After`` header instead of
    an error, so Label Studio can simply ask again.
    """

@dataclass(frozen=True)
class TaskImage:
    """One task's image, as the ML backend hands it to the predictor.

    Attributes
    ----------
    ref : str
        The image reference Label Studio holds (``task["data"][data_key]``): a URL such
        as ``/data/upload/1/x.png`` or ``/data/local-files/?d=...``, or whatever the task
        was imported with.
    task_id : int or None
        Label Studio's task id.
    data : dict
        The task's whole ``data`` (``data["skpeal_id"]`` is the image id for tasks
        written by :func:`export_tasks`).
    """

    ref: str
    task_id: Any = None
    data: dict = field(default_factory=dict, compare=False)

    @property
    def image_id(self):
        """``data["skpeal_id"]`` when present, else None."""
        return self.data.get(ID_KEY)


def _http_error(status, message):
    from fastapi import HTTPException

    return HTTPException(status_code=status, detail=message)


def _model_version(predictor):
    mv = getattr(predictor, "model_version", None)
    if callable(mv):
        mv = mv()
    return "skpeal" if mv is None else str(mv)


async def _json_body(request, max_body):
    from .._http import read_json  # the web stack is the optional ``label`` extra

    data = await read_json(request, max_body, allow_no_type=True)
    if not isinstance(data, dict):
        raise _http_error(400, f"the request body must be a JSON object, got "
                               f"{type(data).__name__}")
    return data


def ml_backend_router(predictor, *, max_tasks=1000, max_body=_MAX_BODY):
    """The endpoints of Label Studio's ML backend protocol, as a FastAPI router.

    Mount it on any FastAPI app (``app.include_router(router)``) or use
    :func:`ml_backend_app`. Label Studio calls (Settings -> Model -> Connect Model, with
    the app's URL as Backend URL):

    * ``GET /health`` (and ``GET /``): ``{"status": "UP", "model_class": ...}``.
    * ``POST /setup`` with ``{"project": "<id>.<timestamp>", "schema": "<View>...",
      ...}``: checks the labelling config (a ``<Choices>`` tag on an image; when the
      predictor has ``classes``, every class must be a choice) and answers
      ``{"model_version": ...}``; a config skpeal cannot serve gets 422 with the reason.
    * ``POST /predict`` with ``{"tasks": [{"id", "data": {"image": ...}}, ...],
      "label_config", "project", "params"}``: answers ``{"results": [{"result":
      [{"from_name", "to_name", "type": "choices", "value": {"choices": [label]}}],
      "score", "model_version"}, ...]}``, one per task in order.
    * ``POST /webhook`` with ``{"action": "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" |
      ..., "annotation": {...}, "task": {...}, "project": {...}}``: hands the annotation's
      label to the predictor (201 ``{"status": "ok", ...}``); cancelled annotations and
      other actions are acknowledged and ignored (200). ``ANNOTATION(S)_DELETED`` hands
      the deleted annotations' ids to ``remove_annotations(ids)``. ``START_TRAINING``
      calls the predictor's ``train()`` when it has one (503 with ``Retry-After`` when
      it raises :class:`PredictorNotReady`).

    ``/predict`` takes any number of tasks (Label Studio's "Retrieve Predictions" sends a
    whole selection at once) and hands them to the predictor ``max_tasks`` at a time. A
    refused ``/setup`` is logged (logger ``skpeal.labeling.labelstudio``) with its
    reason, which Label Studio itself does not show.

    Malformed JSON, missing fields, unknown labels and oversized bodies get a 4xx
    answer with a ``detail`` message and reach the predictor not at all.

    Parameters
    ----------
    predictor : object or callable
        ``predictor.predict(images)`` (or ``predictor(images)`` for a plain callable)
        takes a list of :class:`TaskImage` and returns, for each, ``(label, score)`` or
        ``(label, score, model_version)``. Optional members: ``classes`` (checked at
        setup), ``model_version`` (a string or a callable returning one; default
        ``"skpeal"``), ``add_annotation(image, label, annotation)`` (called for each new
        or updated annotation; ``image`` a :class:`TaskImage`, ``annotation`` Label
        Studio's dict, with ``completed_by``, ``updated_at``...), ``train()``,
        ``remove_annotations(ids)`` (annotations deleted in Label Studio), ``connect(setup)``
        (called with ``/setup``'s body: Label Studio's ``hostname``, ``access_token``,
        ``project``).
    max_tasks : int, default=1000
        Most tasks handed to the predictor at once (a ``/predict`` request with more is
        answered in chunks of this size).
    max_body : int, default=32 MiB
        Largest request body in bytes.

    Returns
    -------
    router : fastapi.APIRouter
    """
    # FastAPI is the optional ``label`` extra: imported here so that the export/import
    # functions above work without it. (No ``from __future__ import annotations`` in this
    # module: FastAPI reads the endpoints' ``request: Request`` annotations at run time.)
    from fastapi import APIRouter, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    predict = getattr(predictor, "predict", None)
    if predict is None:
        if not callable(predictor):
            raise TypeError("predictor must be callable or have a predict(images) method")
        predict = predictor
    add = getattr(predictor, "add_annotation", None)
    remove = getattr(predictor, "remove_annotations", None)
    connect = getattr(predictor, "connect", None)
    train = getattr(predictor, "train", None)
    classes = getattr(predictor, "classes", None)
    class_texts = None if classes is None else _class_strings(classes, "predictor.classes")
    # without a config (no /setup yet, none in the request): Label Studio's usual names
    default = LabelingInterface("choice", "image", "image", tuple(class_texts or ()))
    projects = {}  # project id -> LabelingInterface from /setup (used when a request has none)
    router = APIRouter()

    def interface(config, project):
        if config:
            try:
                ui = parse_labeling_config(config)
            except ValueError as exc:
                raise _http_error(422, str(exc)) from None
            if class_texts is not None:
                missing = [c for c in class_texts if c not in ui.choices]
                if missing:
                    raise _http_error(422, f"the labeling config's <Choices name="
                                           f"{ui.from_name!r}> lacks the classes {missing} "
                                           f"that the model predicts (it has "
                                           f"{list(ui.choices)})")
            return ui
        return projects.get(project, default)

    def project_key(value):
        return None if value is None else str(value).split(".", 1)[0]

    @router.get("/health")
    @router.get("/")
    def health():
        return {"status": "UP", "model_class": type(predictor).__name__,
                "model_version": _model_version(predictor)}

    @router.post("/setup")
    async def setup(request: Request):
        data = await _json_body(request, max_body)
        schema = data.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise _http_error(422, "setup needs 'schema': the project's labeling config XML")
        try:
            ui = interface(schema, None)
        except Exception as exc:  # Label Studio shows only "422 Client Error": log why
            _log.warning("Label Studio's /setup of project %s refused: %s",
                         data.get("project"), getattr(exc, "detail", exc))
            raise
        projects[project_key(data.get("project"))] = ui
        if connect is not None:  # e.g. give Label Studio's webhook the basic-auth header
            await run_in_threadpool(connect, data)
        return {"model_version": _model_version(predictor)}

    @router.post("/predict")
    async def predict_tasks(request: Request):
        data = await _json_body(request, max_body)
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise _http_error(422, "predict needs 'tasks': a non-empty list of tasks")
        config = data.get("label_config")
        if config is not None and not isinstance(config, str):
            raise _http_error(422, "'label_config' must be the labeling config XML string")
        ui = interface(config, project_key(data.get("project")))
        images = []
        for i, task in enumerate(tasks):
            where = _task_name(task, i)
            if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
                raise _http_error(422, f"{where} has no 'data' object")
            ref = task["data"].get(ui.data_key)
            if not isinstance(ref, str) or not ref:
                raise _http_error(422, f"{where}: its data has no image under "
                                       f"{ui.data_key!r} (fields: {sorted(task['data'])})")
            images.append(TaskImage(ref, task.get("id"), dict(task["data"])))
        try:
            answers = []
            for start in range(0, len(images), max_tasks):  # any number, max_tasks at a time
                answers += list(await run_in_threadpool(predict,
                                                        images[start:start + max_tasks]))
        except LookupError as exc:  # a task the predictor does not know
            raise _http_error(422, str(exc.args[0] if exc.args else exc)) from None
        except PredictorNotReady as exc:  # no model yet: Label Studio may retry
            from fastapi import HTTPException

            raise HTTPException(status_code=503, detail=str(exc),
                                headers={"Retry-After": "5"}) from None
        if len(answers) != len(images):
            raise RuntimeError(f"the predictor returned {len(answers)} answers for "
                               f"{len(images)} images")
        version = _model_version(predictor)
        results = []
        for image, answer in zip(images, answers):
            label, score, *rest = answer
            text = str(label)
            if ui.choices and text not in ui.choices:
                raise _http_error(422, f"task {image.task_id}: the model's label {text!r} is "
                                       f"not a choice of the labeling config "
                                       f"{list(ui.choices)}")
            results.append({"result": _choice_result(text, ui.from_name, ui.to_name),
                            "score": float(score),
                            "model_version": str(rest[0]) if rest else version})
        return {"results": results}

    @router.post("/webhook")
    async def webhook(request: Request):
        data = await _json_body(request, max_body)
        action = data.get("action")
        if not isinstance(action, str):
            raise _http_error(422, "webhook needs 'action' (e.g. 'ANNOTATION_CREATED')")
        project = data.get("project") if isinstance(data.get("project"), Mapping) else {}
        if action == "START_TRAINING":
            if train is None:
                return JSONResponse({"status": "ignored", "reason": "the model trains "
                                     "from its own label store"}, status_code=200)
            try:
                result = await run_in_threadpool(train)
            except PredictorNotReady as exc:  # no model yet: answered at once
                return JSONResponse({"detail": str(exc)}, status_code=503,
                                    headers={"Retry-After": "5"})
            return JSONResponse({"status": "ok", "result": result}, status_code=201)
        if action in _DELETE_EVENTS:
            if remove is None:
                return JSONResponse({"status": "ignored", "reason": "the predictor keeps no "
                                     "annotations"}, status_code=200)
            ids = _deleted_ids(data)
            result = await run_in_threadpool(remove, ids)
            return JSONResponse({"status": "ok", "result": result}, status_code=201)
        if action not in _TRAIN_EVENTS:
            return JSONResponse({"status": "Unknown event"}, status_code=200)
        ann, task = data.get("annotation"), data.get("task")
        if not isinstance(ann, Mapping) or not isinstance(task, Mapping):
            raise _http_error(422, f"{action} needs 'annotation' and 'task' objects")
        ui = interface(project.get("label_config"), project_key(project.get("id")))
        where = _task_name(task, 0)
        if not isinstance(task.get("data"), Mapping):
            raise _http_error(422, f"{where} has no 'data' object")
        if ann.get("was_cancelled"):
            return JSONResponse({"status": "skipped", "reason": "the annotation was "
                                 "cancelled (skipped)"}, status_code=200)
        try:
            label = _label_of(ann.get("result", []), f"{where}, annotation {ann.get('id')}",
                              ui.from_name)
        except ValueError as exc:
            raise _http_error(422, str(exc)) from None
        if label is None:
            return JSONResponse({"status": "skipped", "reason": "no choice in the "
                                 "annotation"}, status_code=200)
        if class_texts is not None and str(label) not in class_texts:
            raise _http_error(422, f"{where}: label {label!r} is not one of the classes "
                                   f"{class_texts}")
        ref = task["data"].get(ui.data_key)
        image = TaskImage(ref if isinstance(ref, str) else "", task.get("id"),
                          dict(task["data"]))
        if add is None:
            return JSONResponse({"status": "ignored", "reason": "the predictor takes no "
                                 "annotations"}, status_code=200)
        label_out = classes[class_texts.index(str(label))] if class_texts else label
        try:
            await run_in_threadpool(add, image, label_out, dict(ann))
        except LookupError as exc:
            raise _http_error(422, str(exc.args[0] if exc.args else exc)) from None
        return JSONResponse({"status": "ok", "result": {"task": task.get("id"),
                                                        "label": str(label)}},
                            status_code=201)

    return router


def ml_backend_app(predictor, *, basic_auth=None, **kwargs):
    """A FastAPI app serving Label Studio's ML backend protocol over ``predictor``.

    Run it with uvicorn on 127.0.0.1 (``uvicorn.run(app, host="127.0.0.1",
    port=9090)``) and enter ``http://127.0.0.1:9090`` as Backend URL in Label Studio.

    Parameters
    ----------
    predictor : object or callable
        See :func:`ml_backend_router`.
    basic_auth : tuple of (str, str), optional
        A user and password every request must present (HTTP basic auth; Label Studio's
        "Basic Authentication" option when connecting the model). Use it whenever the
        server listens on anything but localhost.
    **kwargs
        Passed to :func:`ml_backend_router`.

    Returns
    -------
    app : fastapi.FastAPI

    Examples
    --------
    >>> from fastapi.testclient import TestClient
    >>> from skpeal.labeling.labelstudio import ml_backend_app
    >>> app = ml_backend_app(lambda images: [("cat", 0.9)] * len(images))
    >>> client = TestClient(app)
    >>> client.get("/health").json()["status"]
    'UP'
    >>> r = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "a.png"}}]})
    >>> r.json()["results"][0]["result"][0]["value"]
    {'choices': ['cat']}
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from .._http import guard  # the web stack (the label extra)

    if basic_auth is not None:
        if (not isinstance(basic_auth, tuple) or len(basic_auth) != 2
                or not all(isinstance(s, str) and s for s in basic_auth)):
            raise ValueError("basic_auth must be a (user, password) pair of non-empty strings")
    app = FastAPI(title="skpeal ML backend for Label Studio", docs_url=None, redoc_url=None)
    guard(app)  # 431 for oversized headers, 507 on a full disk

    if basic_auth is not None:
        expected = (basic_auth[0].encode(), basic_auth[1].encode())

        @app.middleware("http")
        async def check_auth(request: Request, call_next):
            header = request.headers.get("authorization", "")
            ok = False
            if header.lower().startswith("basic "):
                try:
                    user, _, pw = b64decode(header[6:]).partition(b":")
                    ok = hmac.compare_digest(user, expected[0]) & hmac.compare_digest(
                        pw, expected[1])
                except (ValueError, TypeError):
                    ok = False
            if not ok:
                return JSONResponse({"detail": "unauthorized: HTTP basic auth required"},
                                    status_code=401,
                                    headers={"WWW-Authenticate": 'Basic realm="skpeal"'})
            return await call_next(request)

    app.include_router(ml_backend_router(predictor, **kwargs))
    return app
