"""A :class:`~skpeal.labeling.LabelingSession` and Label Studio: export its tasks, import
labels into it, and serve it as Label Studio's ML backend predictor (:class:`SessionBackend`).
"""

import json
import math
import numbers
import os
import threading
import time
from urllib.parse import quote

from ..._io import atomic_write_text
from .._checks import check_out_parent
from ._ledger import Ledger
from ._webhook import fix_webhook_auth
from .backend import PredictorNotReady
from .tasks import ID_KEY, _when, export_tasks, import_labels, local_files_url

__all__ = ["SessionBackend", "export_session", "import_session", "local_files_settings"]


def local_files_settings(session_or_paths):
    """Where Label Studio's local file serving must point for a session's images.

    Label Studio (1.23) serves a file only under a local-files storage whose path lies
    strictly inside ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``: the storage is the
    images' common folder, the document root its parent. :func:`export_session` writes
    the URLs for exactly these settings.

    Parameters
    ----------
    session_or_paths : LabelingSession or list of str
        A session, or image paths.

    Returns
    -------
    settings : dict
        ``document_root`` (for ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``) and
        ``storage_path`` (the **Absolute local path** of the local-files source storage).

    Examples
    --------
    >>> from skpeal.labeling.labelstudio import local_files_settings
    >>> local_files_settings(["/data/shoes/a.png", "/data/shoes/red/b.png"])
    {'document_root': '/data', 'storage_path': '/data/shoes'}
    """
    paths = getattr(session_or_paths, "_paths", session_or_paths)
    paths = [os.path.realpath(os.fspath(p)) for p in paths]
    if not paths:
        raise ValueError("no images")
    storage = os.path.commonpath([os.path.dirname(p) for p in paths])
    root = os.path.dirname(storage)
    if root == storage:
        raise ValueError(f"the images' common folder is {storage!r}: Label Studio needs a "
                         "document root strictly above the storage folder; put the images "
                         "in a folder, or pass image_url=")
    return {"document_root": root, "storage_path": storage}


def _session_image_urls(paths, image_url):
    if image_url is None:
        root = local_files_settings(paths)["document_root"]
        return [local_files_url(p, root) for p in paths]
    if isinstance(image_url, str):
        root = os.path.commonpath([os.path.dirname(os.path.realpath(p)) for p in paths])
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
        ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the parent of the images' common
        folder and a local-files storage on that folder (see :func:`local_files_settings`).
        A string: a URL prefix, followed by each image's path
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
            atomic_write_text(check_out_parent(path_or_file, "export_label_studio"), text)
    return tasks


def _session_image_id(session, key, where):
    """The session's image id for an export key or a task's ``skpeal_id``."""
    if isinstance(key, str) and len(key) <= 20 and key.strip().lstrip("-").isdigit():
        key = int(key)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool) and \
            session.image_path(int(key)) is not None:
        return int(key)
    raise KeyError(f"{where}: {key!r} is not an image id of this session (tasks need "
                   f"data[{ID_KEY!r}] as written by export_label_studio)")


def import_session(session, export, *, annotator="label-studio", client="label-studio"):
    """Add the labels of a Label Studio export to a session (backs ``import_label_studio``).

    Every label is checked first (one bad task imports nothing), then all are added in
    one transaction as new history rows. An image in several tasks takes the label of its
    newest annotation (by ``updated_at``), wherever its task sits in the export (nothing
    is overwritten: the history keeps every row, the latest answer counts). A label equal
    to the image's label in force is not added again.

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
    newest = {}  # image id -> (time, order, label): an image in several tasks
    for order, x in enumerate(imported):
        image_id = _session_image_id(session, x.key, f"task {x.task_id}")
        when = _when({"updated_at": x.updated_at}, order)
        if image_id not in newest or when >= newest[image_id][0]:
            newest[image_id] = (when, x)
    in_force = session.store.labelled()
    answers, unchanged = [], 0
    for image_id, (_, x) in newest.items():
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
    session : LabelingSession or StartingSession
        A session (``/predict`` answers 503 until it is prepared), or a restarted one
        whose model still loads (``skpeal label --ml-backend-port``).
    annotator, client : str, default="label-studio"
        Stored with every label that arrives through the webhook.
    basic_auth : tuple of (str, str), optional
        The backend's basic auth (as given to :func:`ml_backend_app`): at ``/setup`` the
        backend then gives Label Studio's webhook this ``Authorization`` header itself
        (see :meth:`connect`).

    Attributes
    ----------
    session : LabelingSession
    """

    def __init__(self, session, *, annotator="label-studio", client="label-studio",
                 basic_auth=None):
        self.session = session
        self.annotator, self.client = annotator, client
        self.basic_auth = basic_auth
        self.ledger = Ledger(session.project / "labelstudio.sqlite")

    @property
    def classes(self):
        """The session's class names (checked against the labelling config at setup)."""
        return list(self.session.classes)

    @property
    def model_version(self):
        """The session's current model version (``"round-N"``).

        While a restarted session's model loads, the last stored round's (``/health``
        answers at once).
        """
        s = self.session
        if getattr(s, "starting", False) and s.loading:
            return f"round-{s.round}" if s.round >= 0 else "skpeal"
        return s.model_version or "skpeal"

    def _with_model(self):
        """The session with a model, else :class:`PredictorNotReady` (503)."""
        s = self.session
        if getattr(s, "starting", False):  # a restart (skpeal label): its model loads behind
            if s.loading:
                raise PredictorNotReady("the model is still loading (skpeal label was "
                                        "restarted); ask again shortly")
            if s.session is None or not s.session.ready:
                raise PredictorNotReady(f"the session could not be opened: {s.error}")
            s = s.session
        if not s.ready:
            raise PredictorNotReady("the session is not prepared yet (its pool is still "
                                    "being encoded); ask again shortly")
        return s

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
            The session is not prepared yet, or a restarted one's model is still loading
            (answered with 503).
        """
        s = self._with_model()
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
        ann_id = annotation.get("id")
        if isinstance(ann_id, bool) or not isinstance(ann_id, int):
            return self.session.label(image_id, label, client=self.client,
                                      annotator=self.annotator)
        when = _when(annotation, 0)[0]
        newest = self.ledger.record(ann_id, image_id, image.task_id, str(label),
                                    time.time() if when == -math.inf else when)
        if newest["id"] != ann_id:  # another task of this image has a newer annotation
            return None
        return self.session.label(image_id, label, client=self.client,
                                  annotator=self.annotator)

    def connect(self, setup, *, wait=60.0):
        """Give Label Studio's webhook for this backend the basic-auth header.

        Label Studio registers ``<Backend URL>/webhook`` without headers, so with basic
        auth every annotation would be refused (401). Called at ``/setup`` (whose body
        carries Label Studio's ``hostname`` and the project owner's ``access_token``), this
        sets the ``Authorization`` header of the project's ``.../webhook`` webhooks through
        Label Studio's API, in the background (the webhook may be created just after
        ``/setup``); if that fails within ``wait`` seconds, a warning on the logger
        ``skpeal.labeling.labelstudio`` gives the step to take by hand.

        Parameters
        ----------
        setup : dict
            The body of Label Studio's ``/setup`` request.
        wait : float, default=60
            How long to look for the webhook.

        Returns
        -------
        thread : threading.Thread or None
            The background thread (None without basic auth).
        """
        if self.basic_auth is None:
            return None
        thread = threading.Thread(target=fix_webhook_auth, name="skpeal-ls-webhook",
                                  args=(setup, self.basic_auth, wait), daemon=True)
        thread.start()
        return thread

    def remove_annotations(self, ids):
        """Take back annotations deleted in Label Studio (the history keeps every row).

        The image gets the label of its newest remaining annotation (from another task),
        or, when none is left, its Label Studio label is cancelled (it is unlabelled
        again, unless a label given on skpeal's page is in force).

        Parameters
        ----------
        ids : list of int
            Label Studio's annotation ids (unknown ones are ignored).

        Returns
        -------
        changed : list of int
            The image ids whose label changed.
        """
        changed = []
        for ann_id in ids:
            hit = self.ledger.delete(ann_id)
            if hit is None:
                continue
            image_id, newest = hit
            if newest is not None:
                if self.session.store.labelled().get(image_id) != newest["label"]:
                    self.session.label(image_id, newest["label"], client=self.client,
                                       annotator=self.annotator)
                    changed.append(image_id)
            elif self.session.store.cancel(image_id, client=self.client,
                                           annotator=self.annotator) is not None:
                changed.append(image_id)
        return changed

    def train(self):
        """Refit the session's model on every label in force (Label Studio's "Start Training").

        Returns
        -------
        info : dict
            What :meth:`LabelingSession.refit` returns.

        Raises
        ------
        PredictorNotReady
            No model yet (a restart still loading it, or a pool still being encoded):
            answered at once with 503 and ``Retry-After``.
        """
        return self._with_model().refit()
