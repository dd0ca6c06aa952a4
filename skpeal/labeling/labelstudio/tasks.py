"""Label Studio's JSON tasks: images, suggestions and labels out; labels back in.

:func:`export_tasks` writes tasks (the image, skpeal's image id under ``data["skpeal_id"]``,
the model's suggestion as a prediction, labels as annotations); :func:`import_labels`
reads the labels of Label Studio's JSON export. Standard library only.
"""

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from .config import _class_strings

__all__ = ["ID_KEY", "ImportedLabel", "export_tasks", "import_labels", "local_files_url"]

#: The task ``data`` field that carries skpeal's image id through Label Studio.
ID_KEY = "skpeal_id"


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
