"""The labelling session: the active-learning loop with any oracle (a person or a script).

A :class:`LabelingSession` owns a project folder::

    <project>/labels.sqlite          the label store (see skpeal.labeling.store)
    <project>/models/round-N.safetensors   the adapter of every round's model
    <project>/thumbs/                thumbnails (web app)

The loop::

    session = LabelingSession("proj", images="photos/", classes=["cat", "dog"],
                              estimator=CLIPAdapterClassifier(...))
    session.prepare()                     # encode the pool; round 0 = zero-shot model
    while ...:
        for item in session.next_batch(): # image ids with the model's suggestion
            session.label(item["image_id"], answer)   # or session.skip(...)
        session.refit()                   # a fresh adapter on every label in force

Round ``r``'s model is trained on the labels in force when it was fitted (round 0: none,
zero-shot from the class names). Its calibrated probabilities over the pool give the
next batch (by default: entropy with PCB class balancing), the suggestion shown with
each image, and the estimated accuracy on the unlabelled pool (the mean of the maximum
probability, an honest estimate only when the model is calibrated). Nothing in the loop
knows who answers: a person through :mod:`skpeal.labeling.app`, or a simulated oracle
reading hidden labels (:meth:`LabelingSession.simulate`). The round logic (each round's
model, scoring, queries and their seeds) is :class:`skpeal.labeling.loop.ActiveLearningLoop`,
the same loop ``skpeal run`` drives with the pool's hidden labels as oracle.

Thread-safety: the methods may be called from several threads (the web app answers
requests while a background thread refits); :meth:`refit` trains without holding the
session's lock and swaps the new model in at the end.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import strategies
from .._io import atomic_path, atomic_write_text
from ..datasets import IMAGE_EXTENSIONS
from ..estimator import CLIPAdapterClassifier
from . import labelstudio
from ._checks import check_out_parent, check_session_params
from .loop import ENCODE_CHUNK, ActiveLearningLoop
from .stop import SessionStopping
from .store import LabelStore

__all__ = ["LabelingSession", "collect_images"]

def collect_images(source, *, exclude=None) -> list[str]:
    """Absolute paths of the images of ``source``.

    Parameters
    ----------
    source : str, path-like or sequence of them
        A folder (searched recursively for files with an extension in
        :data:`skpeal.datasets.IMAGE_EXTENSIONS`, skipping hidden folders), or a list of
        image files.
    exclude : path-like, optional
        A folder whose files are never taken (the project folder).

    Returns
    -------
    paths : list of str
        Sorted, absolute, symlinks resolved. Inside a folder, a file (or symlink) whose
        real location is outside the folder is left out, so nothing outside the folder
        can ever be served.

    Raises
    ------
    ValueError
        When a listed file or the folder does not exist, or no image is found.
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        root = Path(source).resolve()
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if Path(name).suffix.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                    continue
                real = (Path(dirpath) / name).resolve()
                if not real.is_file() or not real.is_relative_to(root):
                    continue
                if excl is not None and real.is_relative_to(excl):
                    continue
                out.append(os.fspath(real))
        paths = sorted(set(out))
        if not paths:
            raise ValueError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) "
                             f"found under {os.fspath(source)!r}")
        return paths
    if isinstance(source, (str, os.PathLike)):
        raise ValueError(f"images: {os.fspath(source)!r} is not a folder")
    paths = []
    for p in source:
        real = Path(p).resolve()
        if not real.is_file():
            raise ValueError(f"images: {os.fspath(p)!r} is not a file")
        paths.append(os.fspath(real))
    if not paths:
        raise ValueError("images: the list of images is empty")
    return sorted(set(paths))


def _check_classes(classes) -> list[str]:
    if isinstance(classes, str) or classes is None:
        raise ValueError(f"classes must be a list of class names, got {classes!r}")
    classes = [c for c in classes]
    if len(classes) < 2:
        raise ValueError(f"classes: give at least two class names, got {classes!r}")
    for c in classes:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"classes: every class name must be a non-empty string, got {c!r}")
        if "\x00" in c:
            raise ValueError(f"classes: {c!r} holds a NUL character")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes: a class name is listed twice in {classes!r}")
    return classes


def folder_name(label: str) -> str:
    """The folder a class is exported to: ``label`` with ``/ \\ : * ? " < > |`` and control
    characters replaced by ``_`` (``"T-shirt/top"`` -> ``"T-shirt_top"``)."""
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", label).strip()
    return "_" if name in ("", ".", "..") else name


class LabelingSession:
    """An active-learning labelling session over a project folder.

    Parameters
    ----------
    project : str or path-like
        The project folder (created). Everything the session learns lives there; opening
        the same folder again resumes the session (same labels, same pending batch).
    images : str, path-like, sequence of them, or None
        A folder (searched recursively) or a list of image files; see
        :func:`collect_images`. New images are added to a resumed project. None: the
        images already in the project.
    classes : list of str or None
        The class names, in display order. A resumed project keeps its classes: passing
        different ones raises. None: the project's.
    classnames : dict or list of str, optional
        Text of each class for the prompts (default: the class name).
    estimator : CLIPAdapterClassifier, optional
        The template of every round's model (its parameters; ``classes``,
        ``classnames``, ``random_state`` and, in round 0, ``max_epochs`` are set by the
        session). Default: ``CLIPAdapterClassifier()`` (ViT-B-32, OpenAI weights).
    strategy : callable, optional
        A skpeal query function (default :func:`skpeal.strategies.entropy_sampling`;
        with the estimator's default calibration loss this is calibrated entropy).
    balance : {"pcb", "none"}, default="pcb"
        Wrap ``strategy`` with :func:`skpeal.strategies.class_balanced` (never
        :func:`~skpeal.strategies.random_sampling`).
    gamma : float, default=0.1
        PCB candidate fraction.
    init : {"zero-shot", "random"}, default="zero-shot"
        The first batch: picked by ``strategy`` on the zero-shot model, or drawn at
        random (the paper's protocol). The zero-shot model's suggestions are shown
        either way.
    batch_size : int, default=10
        Images per batch.
    annotator : str, optional
        Stored with every answer (default: the login name).
    random_state : int, default=0
        Seeds every round's fit and query (round ``r`` always gets the same seeds; see
        :mod:`skpeal.labeling.loop`).
    lease_seconds : float, default=600
        How long an image handed to one client stays reserved for it.
    train_batch : {"labels", "estimator"}, default="labels"
        The training batch of every refit. ``"labels"``: all labels in one batch (one
        step per epoch) when the estimator keeps the image tower frozen with cached
        features (the prompt adapter, or LoRA on the text tower only, with
        ``feature_cache=True``), else the estimator's ``batch_size``. A step's cost is
        then the text tower's, whatever the number of labels, so the wait per round
        stops growing with the labels (see the "Label your own images" guide for the
        measured wait and accuracy). ``"estimator"``: always the estimator's
        ``batch_size``.

    Attributes
    ----------
    store : LabelStore
        The label store.
    loop : ActiveLearningLoop
        The round logic (built from ``estimator``, ``strategy``, ``balance``, ``gamma``,
        ``init``, ``train_batch`` and ``random_state``).
    state : dict
        What the session is doing: ``phase`` (``"new"``, ``"encoding"``, ``"ready"``,
        ``"training"``, ``"scoring"``), ``done`` and ``total`` (progress of the phase),
        ``error`` (the last failed refit's message, or None).
    """

    def __init__(self, project, images=None, classes=None, *, classnames=None, estimator=None,
                 strategy=None, balance="pcb", gamma=0.1, init="zero-shot", batch_size=10,
                 annotator=None, random_state=0, lease_seconds=600.0, train_batch="labels"):
        self.project = Path(project)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        check_session_params(estimator, lease_seconds)
        # the round logic (checks its own parameters before anything is created on disk)
        self.loop = ActiveLearningLoop(
            CLIPAdapterClassifier() if estimator is None else estimator,
            classnames=classnames, strategy=strategy, balance=balance, gamma=gamma,
            init=init, train_batch=train_batch, random_state=random_state)
        # check what can be checked before anything is created on disk
        new_paths = None if images is None else collect_images(images, exclude=self.project)
        if classes is not None:
            classes = _check_classes(classes)
        elif not (self.project / "labels.sqlite").exists():
            raise ValueError("classes: a new project needs its class names")
        self.project.mkdir(parents=True, exist_ok=True)
        self.store = LabelStore(self.project)
        stored = self.store.get_meta("classes")
        if classes is None:
            if stored is None:
                raise ValueError("classes: a new project needs its class names")
            classes = stored
        classes = _check_classes(classes)
        if stored is not None and stored != classes:
            raise ValueError(
                f"{self.project} is a project with classes {stored}; got {classes}. Use "
                "another project folder for other classes"
            )
        if stored is None:
            self.store.set_meta("classes", classes)
        self.classes = classes
        self.classnames = classnames
        self.loop.classes = classes
        if new_paths is not None:
            self.store.add_images(new_paths)
        rows = self.store.images()
        if not rows:
            raise ValueError("images: the project has no images yet; pass images=")
        self._ids = np.array([r[0] for r in rows], dtype=np.int64)
        self._paths = [r[1] for r in rows]
        self._row = {int(i): k for k, i in enumerate(self._ids)}
        self.batch_size = int(batch_size)
        if annotator is None:
            try:
                annotator = getpass.getuser()
            except (KeyError, OSError):  # no login name (some containers)
                annotator = "unknown"
        self.annotator = annotator
        self.random_state = int(random_state)
        self.lease_seconds = float(lease_seconds)
        self.state = {"phase": "new", "done": 0, "total": 0, "error": None}
        self._lock = threading.RLock()
        self._fit_lock = threading.Lock()
        self._model = None
        self._scores = None  # PoolScores of the current model over every image
        self._round = -1
        self._version = None
        self._n_queries = 0
        # stopping suggestions (skpeal.labeling.stop): replaced to change the criteria
        self.stopping = SessionStopping(self.store, self._ids, self.classes,
                                        random_state=self.random_state)

    # ------------------------------------------------------------------ model state
    @property
    def estimator(self):
        """The template of every round's model (``loop.estimator``)."""
        return self.loop.estimator

    @property
    def _proba(self):
        return None if self._scores is None else self._scores.proba

    @property
    def round(self) -> int:
        """The round of the current model (-1 before :meth:`prepare`)."""
        return self._round

    @property
    def model_version(self) -> str | None:
        """``"round-N"`` of the current model."""
        return self._version

    @property
    def model(self):
        """The current fitted estimator (None before :meth:`prepare`)."""
        return self._model

    @property
    def ready(self) -> bool:
        """Whether a model has scored the pool (batches can be given)."""
        return self._scores is not None

    @property
    def stale(self) -> bool:
        """Whether the labels in force differ from those the current model was fitted on.

        True e.g. after a process was killed during its refit: a :meth:`refit` would
        train on more (or fewer) labels.
        """
        current = [r for r in self.store.rounds() if r["round"] == self._round]
        n = current[0]["n_labels"] if current else 0
        return self.ready and len(self.store.labelled()) != n

    def _classes_sorted(self):
        return np.array(sorted(self.classes), dtype=object)

    def _adapter_path(self, rnd) -> Path:
        return self.project / "models" / f"round-{rnd}.safetensors"

    def _score(self, est, phase):
        """The model's :class:`~skpeal.labeling.loop.PoolScores` over every image."""
        self.state.update(phase=phase, done=0, total=len(self._paths))
        return self.loop.score(est, self._paths,
                               chunk=ENCODE_CHUNK if phase == "encoding" else None,
                               progress=lambda done: self.state.update(done=done))

    def _estimate(self, proba, labelled_rows):
        mask = np.ones(len(proba), dtype=bool)
        mask[labelled_rows] = False
        return float(proba[mask].max(axis=1).mean()) if mask.any() else None

    def prepare(self):
        """Load or fit the current model and score the pool.

        A new project fits the zero-shot round 0 from the class names; a resumed project
        loads its last round's adapter, and its pending batch is kept.

        Returns
        -------
        self : LabelingSession
            Ready: :meth:`next_batch` gives images.
        """
        with self._fit_lock:
            rounds = self.store.rounds()
            est = None
            if rounds:
                last = rounds[-1]["round"]
                path = self._adapter_path(last)
                if path.exists():
                    try:
                        n = len(self.store.labelled())
                        est = self.loop.estimator_for(last, n).load_adapter(path)
                        rnd = last
                    except ValueError:  # the estimator's parameters changed: refit below
                        est = None
            if est is None:
                labels = self.store.labelled()
                rnd = rounds[-1]["round"] + 1 if rounds else 0
                if rounds and labels:
                    self._fit_and_swap(rnd, labels)
                    return self
                est = self.loop.zero_shot(self._paths)
                self._save_adapter(est, rnd)
            self.state.update(phase="encoding")
            scores = self._score(est, "encoding")
            labels = self.store.labelled()
            if not any(r["round"] == rnd for r in rounds):
                rows = [self._row[i] for i in labels]
                self.store.add_round(rnd, f"round-{rnd}", len(labels),
                                     self._estimate(scores.proba, rows), 0.0)
            with self._lock:
                self._install(est, rnd, scores)
                if not self.store.pending():
                    self._refill(reset=True)
            self.state.update(phase="ready")
        return self

    def _save_adapter(self, est, rnd):
        with atomic_path(self._adapter_path(rnd)) as tmp:
            est.save_adapter(tmp)

    def _install(self, est, rnd, scores):
        self._model, self._round, self._version = est, rnd, f"round-{rnd}"
        self._scores = scores
        self._n_queries = 0
        self.stopping.observe(rnd, scores.proba, self._row, self._classes_sorted())

    def refit(self):
        """Train a fresh adapter on every label in force, rescore the pool, new batch.

        The pending batch is replaced by the new model's picks (items a client holds
        stay with it). Labels given while this runs are kept and go into the next refit.

        Returns
        -------
        info : dict
            ``round``, ``n_labels``, ``estimated_accuracy``, ``fit_seconds``.
        """
        with self._fit_lock:
            labels = self.store.labelled()
            if not labels:
                raise ValueError("refit: no label yet; label some images first")
            return self._fit_and_swap(self._round + 1, labels)

    def _fit_and_swap(self, rnd, labels):
        t0 = time.perf_counter()
        self.state.update(phase="training", done=0, total=len(labels), error=None)
        try:
            ids = sorted(labels, key=self._row.__getitem__)  # pool order, as the runner
            est = self.loop.fit(rnd, [self._paths[self._row[i]] for i in ids],
                                [labels[i] for i in ids])
            fit_seconds = time.perf_counter() - t0
            self._save_adapter(est, rnd)
            scores = self._score(est, "scoring")
        except Exception as exc:
            self.state.update(phase="ready" if self.ready else "new", error=str(exc))
            raise
        acc = self._estimate(scores.proba, [self._row[i] for i in ids])
        self.store.add_round(rnd, f"round-{rnd}", len(ids), acc, fit_seconds)
        with self._lock:
            self._install(est, rnd, scores)
            self._refill(reset=True)
        self.state.update(phase="ready")
        return {"round": rnd, "n_labels": len(ids), "estimated_accuracy": acc,
                "fit_seconds": fit_seconds}

    # ------------------------------------------------------------------ batches
    def _refill(self, reset=False, need=None):
        """Query the current model for ``need`` more images (a full batch by default)."""
        answered = {r["image_id"] for r in self.store.in_force()}
        pending = self.store.pending()
        keep = [p for p in pending if p["client"] is not None] if reset else pending
        taken = answered | {p["image_id"] for p in keep}
        remaining = np.array([k for k, i in enumerate(self._ids) if int(i) not in taken],
                             dtype=np.intp)
        n = min(self.batch_size if need is None else need, len(remaining))
        items = []
        if n > 0:
            labels = self.store.labelled()
            rows = self.loop.query(
                self._round, n, remaining, scores=self._scores,
                labelled=[self._row[i] for i in labels], y_labelled=list(labels.values()),
                k=self._n_queries)
            self._n_queries += 1
            cls = self._classes_sorted()
            items = [(int(self._ids[r]), str(cls[self._proba[r].argmax()]),
                      float(self._proba[r].max())) for r in rows]
        if reset:
            self.store.set_pending(items, self._round)
        else:
            self.store.add_pending(items, self._round)

    def next_batch(self, client="api"):
        """The images to label next (the same ones until they are answered).

        Parameters
        ----------
        client : str, default="api"
            Who asks (a browser tab). Images handed to one client are not handed to
            another while it holds them (see ``lease_seconds``).

        Returns
        -------
        batch : list of dict
            ``image_id``, ``path``, ``suggestion`` (the model's most probable class),
            ``probability`` (its probability), ``round``. Empty when every image is
            answered.
        """
        if not self.ready:
            raise RuntimeError("the session is not prepared: call prepare() first")
        with self._lock:
            items = self.store.lease(client, self.batch_size, expire_after=self.lease_seconds)
            if len(items) < self.batch_size and not [p for p in self.store.pending()
                                                     if p["client"] is None]:
                self._refill(need=self.batch_size - len(items))
                items = self.store.lease(client, self.batch_size,
                                         expire_after=self.lease_seconds)
        return [{"image_id": it["image_id"], "path": self._paths[self._row[it["image_id"]]],
                 "suggestion": it["suggestion"], "probability": it["probability"],
                 "round": it["round"]} for it in items]

    def _check_image(self, image_id):
        if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)) \
                or int(image_id) not in self._row:
            raise KeyError(f"unknown image id {image_id!r}")
        return int(image_id)

    def answer(self, answers, *, client=None, annotator=None):
        """Record several answers in one transaction (committed when this returns).

        Parameters
        ----------
        answers : list of (image_id, label or None)
            None records a skip ("not sure"). Every entry is checked before anything is
            written: one bad entry writes none.
        client : str, optional
            Who answers (a browser tab), stored on the row.
        annotator : str, optional
            Stored on the row (default: the session's ``annotator``).

        Returns
        -------
        row_ids : list of int
            The new history rows.

        Raises
        ------
        KeyError
            An unknown image id.
        ValueError
            A label outside the class list.
        """
        checked = []
        for image_id, label in answers:
            image_id = self._check_image(image_id)
            if label is not None and label not in self.classes:
                raise ValueError(f"label {label!r} is not one of the classes {self.classes}")
            checked.append((image_id, label))
        return self.store.add_answers(checked, annotator=annotator or self.annotator,
                                      client=client, round=self._round,
                                      model_version=self._version)

    def label(self, image_id, label, *, client=None, annotator=None) -> int:
        """Label one image (a second answer for an image is kept too; the latest counts).

        Parameters
        ----------
        image_id : int
            The image (see :meth:`next_batch`).
        label : str
            One of ``classes``.
        client : str, optional
            Who answers (a browser tab), stored on the row.
        annotator : str, optional
            Stored on the row (default: the session's ``annotator``).

        Returns
        -------
        row_id : int
            The history row.
        """
        if label is None:
            raise ValueError("label: give a class name (use skip() for 'not sure')")
        return self.answer([(image_id, label)], client=client, annotator=annotator)[0]

    def skip(self, image_id, *, client=None, annotator=None) -> int:
        """Mark an image as skipped ("not sure"): it is not asked again, nor trained on.

        Parameters
        ----------
        image_id : int
            The image.
        client : str, optional
            Who answers (a browser tab), stored on the row.
        annotator : str, optional
            Stored on the row (default: the session's ``annotator``).

        Returns
        -------
        row_id : int
            The history row.
        """
        return self.answer([(image_id, None)], client=client, annotator=annotator)[0]

    def undo(self, *, client=None, annotator=None):
        """Cancel the latest answer in force (of ``client`` when given).

        The cancellation is a new history row; the image returns to the pending batch.

        Parameters
        ----------
        client : str, optional
            Undo this client's latest answer (None: the latest answer of anyone).
        annotator : str, optional
            Stored on the undo row (default: the session's ``annotator``).

        Returns
        -------
        row : dict or None
            The cancelled answer, None when there was nothing to undo.
        """
        return self.store.undo_last(client=client, annotator=annotator or self.annotator)

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """Where the session stands.

        Returns
        -------
        status : dict
            ``n_images``, ``n_labelled``, ``n_skipped``, ``counts`` (labels per class,
            in class order), ``round``, ``model_version``, ``estimated_accuracy`` (mean
            max-probability of the current model on the unlabelled pool), ``rounds``
            (one dict per fitted model: the learning curve), ``n_pending``, ``state``,
            ``stop_suggestion`` (a suggestion, never an automatic stop: see
            :meth:`skpeal.labeling.stop.SessionStopping.suggestion`; None before
            :meth:`prepare`).
        """
        in_force = self.store.in_force()
        counts = {c: 0 for c in self.classes}
        n_skipped = 0
        for r in in_force:
            if r["kind"] == "label":
                counts[r["label"]] = counts.get(r["label"], 0) + 1
            else:
                n_skipped += 1
        rounds = self.store.rounds()
        current = [r for r in rounds if r["round"] == self._round]
        return {
            "n_images": len(self._ids),
            "n_labelled": sum(counts.values()),
            "n_skipped": n_skipped,
            "counts": counts,
            "classes": list(self.classes),
            "round": self._round,
            "model_version": self._version,
            "estimated_accuracy": current[0]["estimated_accuracy"] if current else None,
            "rounds": [{"round": r["round"], "n_labels": r["n_labels"],
                        "estimated_accuracy": r["estimated_accuracy"],
                        "fit_seconds": r["fit_seconds"]} for r in rounds],
            "n_pending": len(self.store.pending()),
            "state": dict(self.state),
            "stop_suggestion": self.stopping.suggestion() if self.ready else None,
        }

    def predictions(self) -> list[dict]:
        """The current model's prediction for every image (e.g. pre-annotations).

        Returns
        -------
        predictions : list of dict
            Per image, by id: ``image_id``, ``path``, ``suggestion`` (most probable
            class), ``probability`` (its probability), ``entropy`` (of the calibrated
            probabilities; higher = less sure: an order for labelling), ``model_version``.
        """
        if not self.ready:
            raise RuntimeError("the session is not prepared: call prepare() first")
        with self._lock:
            proba, version = self._proba, self._version
        cls = self._classes_sorted()
        top = proba.argmax(axis=1)
        ent = strategies.entropy_scores(proba)
        return [{"image_id": int(i), "path": self._paths[k], "suggestion": str(cls[top[k]]),
                 "probability": float(proba[k, top[k]]), "entropy": float(ent[k]),
                 "model_version": version} for k, i in enumerate(self._ids)]

    # ------------------------------------------------------------------ simulated oracle
    def simulate(self, oracle, n_rounds):
        """Run ``n_rounds`` rounds with a programmatic oracle (tests, replays).

        Parameters
        ----------
        oracle : callable
            ``oracle(image_id, path) -> label or None`` (None skips).
        n_rounds : int
            Batches labelled, each followed by :meth:`refit`.

        Returns
        -------
        rounds : list of dict
            What :meth:`refit` returned each round.
        """
        if not self.ready:
            self.prepare()
        out = []
        for _ in range(n_rounds):
            batch = self.next_batch()
            if not batch:
                break
            answers = [(b["image_id"], oracle(b["image_id"], b["path"])) for b in batch]
            for image_id, label in answers:
                if label is not None and label not in self.classes:
                    raise ValueError(f"simulate: the oracle answered {label!r} for image "
                                     f"{image_id}, which is not one of the classes "
                                     f"{self.classes} (answer None to skip)")
            self.answer(answers)
            if self.store.labelled():
                out.append(self.refit())
        return out

    # ------------------------------------------------------------------ exports
    def _export_rows(self, history):
        rows = self.store.history() if history else self.store.in_force()
        out = []
        for r in rows:
            if not history and r["kind"] != "label":
                continue
            path = self._paths[self._row[r["image_id"]]] if r["image_id"] in self._row else ""
            out.append({
                "image_id": r["image_id"], "path": path, "file": os.path.basename(path),
                **({"kind": r["kind"], "undoes": r["undoes"]} if history else {}),
                "label": r["label"], "annotator": r["annotator"], "client": r["client"],
                "labelled_at": datetime.fromtimestamp(r["created_at"], timezone.utc)
                .isoformat(timespec="seconds"),
                "round": r["round"], "model_version": r["model_version"],
                "suggestion": r["suggestion"], "probability": r["probability"],
            })
        return out

    def export_csv(self, path=None, *, history=False):
        """The labels in force (or the whole history) as CSV.

        Parameters
        ----------
        path : str or path-like, optional
            Written atomically when given.
        history : bool, default=False
            Every row ever written (labels, skips, undos) instead of the labels in force.

        Returns
        -------
        text : str
            The CSV text.
        """
        rows = self._export_rows(history)
        fields = ["image_id", "path", "file", *(["kind", "undoes"] if history else []),
                  "label", "annotator", "client", "labelled_at", "round", "model_version",
                  "suggestion", "probability"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(check_out_parent(path, "export_csv"), text)
        return text

    def export_folder(self, out) -> int:
        """Copy every labelled image to ``<out>/<class>/<file>``.

        ``<class>`` is ``skpeal.labeling.session.folder_name`` of the label
        (``"T-shirt/top"`` goes to ``T-shirt_top/``). Two images with the same file name
        get ``<stem>-<image_id><suffix>``.

        Parameters
        ----------
        out : str or path-like
            The folder to fill (created).

        Returns
        -------
        n : int
            Files copied.
        """
        out = check_out_parent(out, "export_folder")
        folders = {c: folder_name(c) for c in self.classes}
        if len(set(folders.values())) != len(folders):
            folders = {c: f"{folder_name(c)}-{k}" for k, c in enumerate(self.classes)}
        n = 0
        used = set()
        for image_id, label in sorted(self.store.labelled().items()):
            label = folders[label]
            src = Path(self._paths[self._row[image_id]])
            name = src.name
            if (label, name) in used:
                name = f"{src.stem}-{image_id}{src.suffix}"
            used.add((label, name))
            (out / label).mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out / label / name)
            n += 1
        return n

    # ------------------------------------------------------------------ Label Studio
    def export_label_studio(self, path_or_file=None, *, image_url=None):
        """Every image as a Label Studio task, with the model's prediction and the label.

        See :func:`skpeal.labeling.labelstudio.export_session`.

        Parameters
        ----------
        path_or_file : str, path-like or file object, optional
            Where to write the JSON tasks.
        image_url : None, str or callable, default=None
            How Label Studio loads the images: None for its local file serving (document
            root: the images' common folder), a URL prefix, or ``image_url(path) -> URL``.

        Returns
        -------
        tasks : list of dict
            The tasks (``data["skpeal_id"]`` is the image id).
        """
        return labelstudio.export_session(self, path_or_file, image_url=image_url)

    def import_label_studio(self, export, *, annotator="label-studio"):
        """Add the labels of a Label Studio JSON export (client ``"label-studio"``).

        See :func:`skpeal.labeling.labelstudio.import_session`: everything is checked
        before anything is written; every label is a new history row.

        Parameters
        ----------
        export : str, path-like or list of dict
            Label Studio's "Export -> JSON" file, or its tasks.
        annotator : str, default="label-studio"
            Stored with every imported label.

        Returns
        -------
        counts : dict
            ``added`` and ``unchanged`` labels.
        """
        return labelstudio.import_session(self, export, annotator=annotator)

    def export_adapter(self, path):
        """Save the current model's adapter.

        Parameters
        ----------
        path : str or path-like
            The safetensors file to write (see ``CLIPAdapterClassifier.save_adapter``;
            ``load_adapter`` reads it back).
        """
        if self._model is None:
            raise RuntimeError("no model yet: call prepare() first")
        self._model.save_adapter(path)

    def close(self):
        """Close the label store (everything is already committed)."""
        self.store.close()
