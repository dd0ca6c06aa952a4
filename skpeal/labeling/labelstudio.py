"""Label Studio interop: tasks out, labels in, and Label Studio's ML backend protocol.

Three ways to work with a team that labels in `Label Studio <https://labelstud.io>`_:

* **Export** images, the model's suggestions and the labels given so far as Label
  Studio's JSON task format (:func:`export_tasks`; the matching labelling interface is
  :func:`labeling_config`). Each task's ``data`` holds the image (``data["image"]``) and
  the image's id (``data["skpeal_id"]``); ``predictions`` hold the suggestion as a
  ``choices`` result with ``model_version`` and ``score`` (the model's probability of its
  suggestion: sort the Data Manager by "Prediction score", lowest first, to label the most
  uncertain images first); ``annotations`` hold labels already given.
* **Import** the labels of a Label Studio JSON export (:func:`import_labels`): the latest
  annotation of each task wins, cancelled (skipped) annotations are ignored, a label
  outside the class list is an error naming the task.
* **Serve** Label Studio's ML backend protocol (:func:`ml_backend_app`,
  :func:`ml_backend_router`): ``GET /health``, ``POST /setup``, ``POST /predict`` (a
  pre-annotation per task) and ``POST /webhook`` (new annotations), over any *predictor*
  (see :func:`ml_backend_router`). Needs the ``label`` extra (FastAPI); the export and
  import functions need only the standard library.

The request and response shapes follow Label Studio's ML backend (the
``label-studio-ml-backend`` package's ``api.py``, and Label Studio's
``ml/api_connector.py`` that calls it).
"""

import hmac
import json
import math
import numbers
import os
import xml.etree.ElementTree as ET
from base64 import b64decode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

__all__ = [
    "ID_KEY",
    "ImportedLabel",
    "LabelingInterface",
    "PredictorNotReady",
    "SessionBackend",
    "TaskImage",
    "export_session",
    "export_tasks",
    "import_labels",
    "import_session",
    "labeling_config",
    "local_files_url",
    "ml_backend_app",
    "ml_backend_router",
    "parse_labeling_config",
]


class PredictorNotReady(RuntimeError):
    """The predictor has no model yet (e.g. the session is still encoding its pool).

    The ML backend answers ``/predict`` with 503 and a ``Retry-After`` header instead of
    an error, so Label Studio can simply ask again.
    """

#: The task ``data`` field that carries skpeal's image id through Label Studio.
ID_KEY = "skpeal_id"
_TRAIN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
_MAX_BODY = 32 * 2**20  # 32 MiB: Label Studio sends task data, not images


# ----------------------------------------------------------------------- labelling interface
class LabelingInterface(NamedTuple):
    """What skpeal needs from a Label Studio labelling config.

    Attributes
    ----------
    from_name : str
        The ``name`` of the ``<Choices>`` tag (results carry it as ``from_name``).
    to_name : str
        Its ``toName``: the ``name`` of the image tag.
    data_key : str
        The task ``data`` field holding the image (``value="$image"`` gives ``"image"``).
    choices : tuple of str
        The values results use, in the config's order (a ``<Choice>``'s ``alias`` when it
        has one, else its ``value``).
    """

    from_name: str
    to_name: str
    data_key: str
    choices: tuple


def _class_strings(classes, name="classes"):
    if classes is None or isinstance(classes, (str, bytes)):
        raise ValueError(f"{name} must be a list of class labels, got {classes!r}")
    values = [str(c) for c in classes]
    if not values:
        raise ValueError(f"{name} is empty: give at least one class")
    if any(not v.strip() for v in values):
        raise ValueError(f"{name} contains an empty label")
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(f"{name} repeats {dup} (as text, which is what Label Studio stores)")
    return values


def labeling_config(classes, *, from_name="choice", to_name="image", data_key="image"):
    """The Label Studio labelling config (XML) for single-label image classification.

    Paste it into Label Studio under Settings -> Labeling Interface -> Code.

    Parameters
    ----------
    classes : list
        The class labels (written as text, in this order).
    from_name : str, default="choice"
        ``name`` of the ``<Choices>`` tag.
    to_name : str, default="image"
        ``name`` of the ``<Image>`` tag.
    data_key : str, default="image"
        Task ``data`` field of the image (``value="$image"``).

    Returns
    -------
    config : str

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import labeling_config
    >>> print(labeling_config(["cat", "dog"]))
    <View>
      <Image name="image" value="$image"/>
      <Choices name="choice" toName="image" choice="single" showInLine="true">
        <Choice value="cat"/>
        <Choice value="dog"/>
      </Choices>
    </View>
    """
    values = _class_strings(classes)
    for name, v in (("from_name", from_name), ("to_name", to_name), ("data_key", data_key)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    lines = ["<View>",
             f"  <Image name={quoteattr(to_name)} value={quoteattr('$' + data_key)}/>",
             f"  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} "
             'choice="single" showInLine="true">']
    lines += [f"    <Choice value={quoteattr(v)}/>" for v in values]
    lines += ["  </Choices>", "</View>"]
    return "\n".join(lines)


def parse_labeling_config(config):
    """Find the ``<Choices>`` tag, its image and its choices in a labelling config.

    Parameters
    ----------
    config : str
        A Label Studio labelling config (XML), e.g. ``project.label_config``.

    Returns
    -------
    interface : LabelingInterface

    Raises
    ------
    ValueError
        If the config is not XML, has no ``<Choices>`` tag, or its ``toName`` names no
        tag with a ``value="$..."``.

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import labeling_config, parse_labeling_config
    >>> parse_labeling_config(labeling_config(["cat", "dog"]))
    LabelingInterface(from_name='choice', to_name='image', data_key='image', choices=('cat', 'dog'))
    """
    if not isinstance(config, str) or not config.strip():
        raise ValueError("the labeling config is empty: give Label Studio's XML config")
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise ValueError(f"the labeling config is not valid XML: {exc}") from None
    tags = list(root.iter())
    choices_tag = next((t for t in tags if t.tag == "Choices"), None)
    if choices_tag is None:
        raise ValueError("the labeling config has no <Choices> tag: skpeal classifies "
                         "images, use e.g. <Choices name=\"choice\" toName=\"image\">")
    from_name = choices_tag.get("name")
    to_name = choices_tag.get("toName")
    if not from_name or not to_name:
        raise ValueError("the <Choices> tag needs both a name and a toName attribute")
    target = next((t for t in tags if t.get("name") == to_name and t is not choices_tag), None)
    value = None if target is None else target.get("value", "")
    if not value or not value.startswith("$"):
        raise ValueError(f"the <Choices> tag points to toName={to_name!r}, but no tag named "
                         f"{to_name!r} with value=\"$...\" exists (e.g. <Image "
                         f"name=\"{to_name}\" value=\"$image\"/>)")
    values = tuple(c.get("alias") or c.get("value") or "" for c in choices_tag.iter("Choice"))
    return LabelingInterface(from_name, to_name, value[1:].split(".")[0], values)


# ----------------------------------------------------------------------- export
def local_files_url(path, document_root):
    """The URL Label Studio's local file serving gives a file under ``document_root``.

    Label Studio serves local files at ``/data/local-files/?d=<path relative to its
    document root>`` when started with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``
    and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<document_root>``.

    Parameters
    ----------
    path : str or path-like
        An image file inside ``document_root``.
    document_root : str or path-like

    Returns
    -------
    url : str

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import local_files_url
    >>> local_files_url("/data/shoes/a b.png", "/data")
    '/data/local-files/?d=shoes/a%20b.png'
    """
    root = os.path.realpath(os.fspath(document_root))
    full = os.path.realpath(os.fspath(path))
    rel = os.path.relpath(full, root)
    if rel == os.curdir or rel.startswith(os.pardir + os.sep) or rel == os.pardir:
        raise ValueError(f"{os.fspath(path)!r} is not inside the document root {root!r}")
    return "/data/local-files/?d=" + quote(rel.replace(os.sep, "/"))


def _per_task(name, values, n):
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError:
            raise ValueError(f"{name} must be a sequence with one entry per image") from None
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} images")
    return list(values)


def _choice_result(label, from_name, to_name):
    return [{"from_name": from_name, "to_name": to_name, "type": "choices",
             "value": {"choices": [label]}}]


def _json_id(value, where):
    if isinstance(value, (bool, float)) or not isinstance(value, (str, numbers.Integral)):
        raise ValueError(f"{where}: ids must be strings or integers (JSON), got {value!r}")
    return value if isinstance(value, str) else int(value)


def export_tasks(images, *, ids=None, predictions=None, scores=None, model_version="skpeal",
                 labels=None, classes=None, from_name="choice", to_name="image",
                 data_key="image"):
    """Images, suggestions and labels as Label Studio JSON tasks (ready for its import).

    Parameters
    ----------
    images : sequence of str
        One image reference per task, as Label Studio should load it: an ``http(s)://``
        URL, a ``/data/local-files/?d=...`` URL (:func:`local_files_url`), a cloud
        storage URI, ...
    ids : sequence of str or int, optional
        An id per image, stored in ``data["skpeal_id"]`` so :func:`import_labels` can
        give labels back by id. Without it, imports key labels by the image reference.
    predictions : sequence, optional
        The model's suggested label per image (None: no suggestion for that image).
    scores : sequence of float, optional
        The score of each suggestion (skpeal uses the suggestion's probability); Label
        Studio shows it as "Prediction score" and can sort tasks by it.
    model_version : str, default="skpeal"
        Stored with each prediction; Label Studio groups predictions by it.
    labels : sequence, optional
        Labels already given (None: not labelled), exported as annotations.
    classes : sequence, optional
        The class list; when given, every suggestion and label must be one of them.
    from_name, to_name, data_key : str
        Names in the labelling config (see :func:`labeling_config`).

    Returns
    -------
    tasks : list of dict
        Write with ``json.dump(tasks, f)`` and import the file in Label Studio.

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import export_tasks
    >>> tasks = export_tasks(["https://example.org/1.png"], ids=["img-1"],
    ...                      predictions=["dog"], scores=[0.62], labels=["cat"])
    >>> tasks[0]["data"]
    {'image': 'https://example.org/1.png', 'skpeal_id': 'img-1'}
    >>> tasks[0]["predictions"][0]["result"][0]["value"], tasks[0]["predictions"][0]["score"]
    ({'choices': ['dog']}, 0.62)
    >>> tasks[0]["annotations"][0]["result"][0]["value"]
    {'choices': ['cat']}
    """
    if isinstance(images, (str, bytes, os.PathLike)):
        raise ValueError("images must be a list of image references, not a single string")
    images = list(images)
    n = len(images)
    for i, ref in enumerate(images):
        if not isinstance(ref, (str, os.PathLike)) or not os.fspath(ref):
            raise ValueError(f"image {i}: expected a URL or path string, got {ref!r}")
    ids = _per_task("ids", ids, n)
    predictions = _per_task("predictions", predictions, n)
    scores = _per_task("scores", scores, n)
    labels = _per_task("labels", labels, n)
    allowed = None if classes is None else set(_class_strings(classes))
    if not isinstance(model_version, str) or not model_version:
        raise ValueError(f"model_version must be a non-empty string, got {model_version!r}")
    seen_ids = set()
    tasks = []
    for i in range(n):
        where = f"image {i}" + ("" if ids[i] is None else f" (id {ids[i]!r})")
        data = {data_key: os.fspath(images[i])}
        if ids[i] is not None:
            data[ID_KEY] = _json_id(ids[i], where)
            if data[ID_KEY] in seen_ids:
                raise ValueError(f"{where}: the id is repeated; ids must be unique")
            seen_ids.add(data[ID_KEY])
        task = {"data": data}
        for kind, value in (("suggestion", predictions[i]), ("label", labels[i])):
            if value is not None and allowed is not None and str(value) not in allowed:
                raise ValueError(f"{where}: {kind} {value!r} is not one of the classes "
                                 f"{sorted(allowed)}")
        if predictions[i] is not None:
            pred = {"model_version": model_version,
                    "result": _choice_result(str(predictions[i]), from_name, to_name)}
            if scores[i] is not None:
                s = scores[i]
                if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
                    raise ValueError(f"{where}: score must be a finite number, got {s!r}")
                pred["score"] = float(s)
            task["predictions"] = [pred]
        elif scores[i] is not None:
            raise ValueError(f"{where}: a score without a suggestion (predictions is None)")
        if labels[i] is not None:
            task["annotations"] = [{"result": _choice_result(str(labels[i]), from_name, to_name),
                                    "was_cancelled": False, "ground_truth": False}]
        tasks.append(task)
    return tasks


# ----------------------------------------------------------------------- import
@dataclass(frozen=True)
class ImportedLabel:
    """A label read from a Label Studio export (the latest annotation of one task).

    Attributes
    ----------
    key : str or int
        The image's id (``data["skpeal_id"]``) when the task has one, else its image
        reference (``data["image"]``).
    label : object
        The label: an element of ``classes`` when they were given, else the text.
    task_id : int or None
        Label Studio's task id.
    annotation_id : int or None
        Label Studio's annotation id.
    annotator : object
        The annotation's ``completed_by`` (a user id, or a dict with the user's email).
    updated_at : str or None
        When the annotation was last changed (ISO 8601, as exported).
    """

    key: Any
    label: Any
    task_id: Any = None
    annotation_id: Any = None
    annotator: Any = None
    updated_at: Any = None


def _task_name(task, i):
    tid = task.get("id") if isinstance(task, Mapping) else None
    return f"task {tid}" if tid is not None else f"task #{i} of the export"


def _when(ann, order):
    for k in ("updated_at", "created_at"):
        v = ann.get(k)
        if isinstance(v, str):
            try:
                t = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                continue
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
            return (t.timestamp(), order)
    return (-math.inf, order)


def _label_of(result, where, from_name):
    """The single choice in an annotation or prediction result (None if it has none)."""
    if not isinstance(result, list):
        raise ValueError(f"{where}: 'result' must be a list, got {type(result).__name__}")
    found = []
    for item in result:
        if not isinstance(item, Mapping) or item.get("type", "choices") != "choices":
            continue
        if from_name is not None and item.get("from_name") != from_name:
            continue
        value = item.get("value")
        choices = value.get("choices") if isinstance(value, Mapping) else None
        if not isinstance(choices, list):
            raise ValueError(f"{where}: a choices result without a 'value': {{'choices': "
                             f"[...]}} list")
        found.extend(choices)
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"{where}: {len(found)} choices {found} in one annotation; skpeal "
                         "needs exactly one label per image (choice=\"single\")")
    return found[0]


def _load_export(export):
    if isinstance(export, (str, os.PathLike)):
        with open(export, encoding="utf-8") as f:
            try:
                export = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{os.fspath(export)!r} is not JSON: {exc}") from None
    if isinstance(export, Mapping):
        export = [export]
    if not isinstance(export, list):
        raise ValueError("a Label Studio export is a JSON list of tasks, got "
                         f"{type(export).__name__}")
    return export


def import_labels(export, *, classes=None, from_name=None, data_key="image", id_key=ID_KEY):
    """Labels from a Label Studio JSON export: the latest annotation of each task.

    Parameters
    ----------
    export : str, path-like or list of dict
        The file of Label Studio's "Export -> JSON" (not JSON-MIN or CSV), or its tasks.
    classes : sequence, optional
        The class list. When given, every label must be one of them (compared as text),
        and the labels returned are its elements (so integer classes come back as
        integers).
    from_name : str, optional
        Only read results of the ``<Choices>`` tag with this name (default: any
        ``choices`` result).
    data_key : str, default="image"
        The task ``data`` field holding the image (the key when there is no id).
    id_key : str, default="skpeal_id"
        The task ``data`` field holding the image id written by :func:`export_tasks`.

    Returns
    -------
    labels : list of ImportedLabel
        One per task that has a usable annotation, in the export's order. Cancelled
        (skipped) annotations and annotations without a choice are ignored; of the
        others, the one updated last wins (ties: the later in the export).

    Raises
    ------
    ValueError
        Naming the task, for a label outside ``classes``, several choices in one
        annotation, or a task without ``data``.

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import export_tasks, import_labels
    >>> tasks = export_tasks(["a.png", "b.png"], ids=[1, 2], labels=["cat", None])
    >>> [(x.key, x.label) for x in import_labels(tasks, classes=["cat", "dog"])]
    [(1, 'cat')]
    """
    tasks = _load_export(export)
    lookup = None
    if classes is not None:
        texts = _class_strings(classes)
        lookup = dict(zip(texts, list(classes)))
    out = []
    for i, task in enumerate(tasks):
        where = _task_name(task, i)
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            raise ValueError(f"{where} has no 'data' object: give Label Studio's JSON export "
                             "(Export -> JSON), not JSON-MIN or CSV")
        data = task["data"]
        if id_key in data:
            key = data[id_key]
        elif data_key in data:
            key = data[data_key]
        else:
            raise ValueError(f"{where}: its data has neither {id_key!r} nor {data_key!r} "
                             f"(fields: {sorted(data)})")
        anns = task.get("annotations") or []
        if not isinstance(anns, list):
            raise ValueError(f"{where}: 'annotations' must be a list")
        best = None
        for order, ann in enumerate(anns):
            if not isinstance(ann, Mapping):
                raise ValueError(f"{where}: an annotation is not an object")
            if ann.get("was_cancelled") or ann.get("skipped"):
                continue
            aw = f"{where}, annotation {ann.get('id', order)}"
            label = _label_of(ann.get("result", []), aw, from_name)
            if label is None:
                continue
            if lookup is not None and str(label) not in lookup:
                raise ValueError(f"{aw}: label {label!r} is not one of the classes "
                                 f"{list(lookup)}")
            when = _when(ann, order)
            if best is None or when >= best[0]:
                best = (when, ann, label)
        if best is None:
            continue
        _, ann, label = best
        out.append(ImportedLabel(
            key=key, label=lookup[str(label)] if lookup is not None else label,
            task_id=task.get("id"), annotation_id=ann.get("id"),
            annotator=ann.get("completed_by"),
            updated_at=ann.get("updated_at") or ann.get("created_at")))
    return out


# ----------------------------------------------------------------------- ML backend
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
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise _http_error(413, f"request body of {length} bytes is over the {max_body}-byte "
                               "limit")
    body = await request.body()
    if len(body) > max_body:
        raise _http_error(413, f"request body is over the {max_body}-byte limit")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _http_error(400, f"the request body is not JSON: {exc}") from None
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
      other actions are acknowledged and ignored (200). ``START_TRAINING`` calls the
      predictor's ``train()`` when it has one.

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
        Studio's dict, with ``completed_by``, ``updated_at``...), ``train()``.
    max_tasks : int, default=1000
        Largest number of tasks accepted in one ``/predict`` request.
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
        ui = interface(schema, None)
        projects[project_key(data.get("project"))] = ui
        return {"model_version": _model_version(predictor)}

    @router.post("/predict")
    async def predict_tasks(request: Request):
        data = await _json_body(request, max_body)
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise _http_error(422, "predict needs 'tasks': a non-empty list of tasks")
        if len(tasks) > max_tasks:
            raise _http_error(413, f"{len(tasks)} tasks in one request; at most {max_tasks}")
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
            answers = list(await run_in_threadpool(predict, images))
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
            result = await run_in_threadpool(train)
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

    if basic_auth is not None:
        if (not isinstance(basic_auth, tuple) or len(basic_auth) != 2
                or not all(isinstance(s, str) and s for s in basic_auth)):
            raise ValueError("basic_auth must be a (user, password) pair of non-empty strings")
    app = FastAPI(title="skpeal ML backend for Label Studio", docs_url=None, redoc_url=None)

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


# ----------------------------------------------------------------------- a labelling session
def _session_image_urls(paths, image_url):
    if image_url is None or isinstance(image_url, str):
        root = os.path.commonpath([os.path.dirname(os.path.realpath(p)) for p in paths])
        if image_url is None:
            return [local_files_url(p, root) for p in paths]
        prefix = image_url.rstrip("/")
        return [prefix + "/" + quote(os.path.relpath(os.path.realpath(p), root)
                                     .replace(os.sep, "/")) for p in paths]
    if callable(image_url):
        return [image_url(p) for p in paths]
    raise ValueError(f"image_url must be None, a URL prefix or a callable(path) -> URL, got "
                     f"{image_url!r}")


def export_session(session, path_or_file=None, *, image_url=None):
    """A labelling session's images as Label Studio tasks: its model's predictions and labels.

    Backs :meth:`skpeal.labeling.LabelingSession.export_label_studio`.

    Parameters
    ----------
    session : LabelingSession
        A prepared session (its current model gives the predictions).
    path_or_file : str, path-like or file object, optional
        Where to write the tasks as JSON (a path is written atomically).
    image_url : None, str or callable, default=None
        How Label Studio loads each image. None: Label Studio's local file serving, with
        ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the images' common folder (see
        :func:`local_files_url`). A string: a URL prefix, followed by each image's path
        relative to that folder. A callable: ``image_url(path) -> URL``.

    Returns
    -------
    tasks : list of dict
        One task per image, in image-id order: ``data`` (``image`` and ``skpeal_id``, the
        session's image id), ``predictions`` (the model's suggestion, ``score`` its
        probability, ``model_version`` the session's ``"round-N"``), ``annotations`` (the
        label in force, for labelled images).
    """
    preds = session.predictions()
    labelled = session.store.labelled()
    urls = _session_image_urls([p["path"] for p in preds], image_url)
    tasks = export_tasks(urls, ids=[p["image_id"] for p in preds],
                         predictions=[p["suggestion"] for p in preds],
                         scores=[p["probability"] for p in preds],
                         model_version=session.model_version or "skpeal",
                         labels=[labelled.get(p["image_id"]) for p in preds],
                         classes=session.classes)
    if path_or_file is not None:
        text = json.dumps(tasks, indent=1)
        if hasattr(path_or_file, "write"):
            path_or_file.write(text)
        else:
            path = os.fspath(path_or_file)
            tmp = os.path.join(os.path.dirname(path) or ".",
                               f".{os.path.basename(path)}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
    return tasks


def _session_image_id(session, key, where):
    """The session's image id for an export key or a task's ``skpeal_id``."""
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        key = int(key)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool) and \
            int(key) in session._row:
        return int(key)
    raise KeyError(f"{where}: {key!r} is not an image id of this session (tasks need "
                   f"data[{ID_KEY!r}] as written by export_label_studio)")


def import_session(session, export, *, annotator="label-studio", client="label-studio"):
    """Add the labels of a Label Studio export to a session (backs ``import_label_studio``).

    Every label is checked first (one bad task imports nothing), then all are added in
    one transaction as new history rows (nothing is overwritten: the history keeps every
    row, the latest answer counts). A label equal to the image's label in force is not
    added again.

    Parameters
    ----------
    session : LabelingSession
        The session (prepared or not).
    export : str, path-like or list of dict
        Label Studio's JSON export (see :func:`import_labels`); tasks must carry
        ``data["skpeal_id"]`` (as :func:`export_session` writes them).
    annotator, client : str, default="label-studio"
        Stored with every imported label.

    Returns
    -------
    counts : dict
        ``added`` (labels written) and ``unchanged`` (already in force).

    Raises
    ------
    KeyError
        A task whose ``skpeal_id`` is not an image of the session.
    ValueError
        A label outside the session's classes (see :func:`import_labels`).
    """
    imported = import_labels(export, classes=session.classes)
    in_force = session.store.labelled()
    answers, unchanged = [], 0
    for x in imported:
        image_id = _session_image_id(session, x.key, f"task {x.task_id}")
        if in_force.get(image_id) == x.label:
            unchanged += 1
            continue
        answers.append((image_id, x.label))
        in_force[image_id] = x.label
    if answers:
        session.answer(answers, client=client, annotator=annotator)
    return {"added": len(answers), "unchanged": unchanged}


class SessionBackend:
    """A labelling session as the predictor of Label Studio's ML backend.

    Serve it with :func:`ml_backend_app` (``ml_backend_app(SessionBackend(session),
    basic_auth=("skpeal", token))``) or ``skpeal label ... --ml-backend-port 9090``.
    Tasks are matched to the session's images by ``data["skpeal_id"]`` (tasks written by
    :func:`export_session`).

    Parameters
    ----------
    session : LabelingSession
        A prepared session.
    annotator, client : str, default="label-studio"
        Stored with every label that arrives through the webhook.

    Attributes
    ----------
    session : LabelingSession
    """

    def __init__(self, session, *, annotator="label-studio", client="label-studio"):
        self.session = session
        self.annotator, self.client = annotator, client

    @property
    def classes(self):
        """The session's class names (checked against the labelling config at setup)."""
        return list(self.session.classes)

    @property
    def model_version(self):
        """The session's current model version (``"round-N"``)."""
        return self.session.model_version or "skpeal"

    def predict(self, images):
        """The session's current suggestion and its probability for each task's image.

        Parameters
        ----------
        images : list of TaskImage

        Returns
        -------
        answers : list of (str, float, str)
            Suggestion, probability and model version per image.

        Raises
        ------
        KeyError
            A task that is not an image of the session (answered with 422).
        PredictorNotReady
            The session is not prepared yet (answered with 503).
        """
        s = self.session
        if not s.ready:
            raise PredictorNotReady("the session is not prepared yet (its pool is still "
                                    "being encoded); ask again shortly")
        with s._lock:
            proba, version = s._proba, s._version
        cls = s._classes_sorted()
        out = []
        for image in images:
            image_id = _session_image_id(s, image.image_id, f"task {image.task_id}")
            p = proba[s._row[image_id]]
            top = int(p.argmax())
            out.append((str(cls[top]), float(p[top]), version))
        return out

    def add_annotation(self, image, label, annotation):
        """Record a Label Studio annotation as a label of the session.

        Parameters
        ----------
        image : TaskImage
            The task's image (its ``skpeal_id`` names the session's image).
        label : str
            One of the classes.
        annotation : dict
            Label Studio's annotation (unused beyond the label).

        Returns
        -------
        row_id : int
            The session's history row.
        """
        image_id = _session_image_id(self.session, image.image_id, f"task {image.task_id}")
        return self.session.label(image_id, label, client=self.client,
                                  annotator=self.annotator)

    def train(self):
        """Refit the session's model on every label in force (Label Studio's "Start Training").

        Returns
        -------
        info : dict
            What :meth:`LabelingSession.refit` returns.
        """
        return self.session.refit()
