"""A labelling session that is still loading: the page at once, a restart's pending batch.

Importing torch, open_clip and the estimator takes seconds; ``skpeal label`` does not
make the person wait for them to see the page. :class:`StartingSession` stands in for the
:class:`~skpeal.labeling.LabelingSession` while a background thread builds and prepares
it (:meth:`StartingSession.start`, run by the web app's refit worker). A new project
(:meth:`StartingSession.new_project`) has nothing to show until its session gives the
first batch: the page says the model is loading. A restarted project serves meanwhile,
from the SQLite store alone (no torch):

* the pending batch (same images, same order, their stored suggestions and picks);
* picks (``pick`` / ``pick_many``: committed to the store as usual, so the session sees
  them), leases, image paths, a status with the learning curve so far.

* an undo of a pick (the store alone: the pick before it is in force again).

* answers, labels and skips (stored at once with the last stored round; the refit after
  the session is up trains on them: the session is ``stale``).

A project whose first batch was picked without a model (``init`` ``"pixels"`` or
``"random"``, :data:`~skpeal.labeling.config.MODEL_FREE_INIT`) is served entirely while
the model loads (:attr:`StartingSession.without_model`): the page's submit is taken at
once, the next batches are picked the way the first was (by
:func:`~skpeal.labeling._project.first_rows`, the images labelled so far clustered too,
so that a batch covers looks they do not), and the undo of a submitted answer reopens it
from the store. So a person who answers faster than the model loads never waits for it.
Other projects' submit and undo of an answer wait for the model (the page sends them
again by itself).

Everything else (refits, exports, the model's suggestions) waits for the session
(:meth:`StartingSession.wait`) and is then the session's. Every call goes to the session
as soon as it is ``ready`` (it can give batches), not when it is fully prepared: a
project restarted while its pool was being encoded is served by the session from its
first encoded images on, while the rest of the pool is encoded behind (as a new project
is).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .._validation import derive_seed
from ._checks import NEW_PROJECT_CLASSES, check_classes, default_annotator
from ._project import first_rows
from .batches import BatchMixin
from .config import MODEL_FREE_INIT
from .store import LabelStore

__all__ = ["StartingSession"]

#: Seconds a request that needs the model (an answer, an undo) waits for it.
WAIT_SECONDS = 120.0
_POLL_SECONDS = 0.05  # how often :meth:`StartingSession.wait` looks whether it serves


#: What a :class:`BatchMixin` method gives while a new project has no store yet.
_NOTHING_YET = {"next_batch": [], "holds": False, "has_unleased": False, "has_labels": False}


def _store_or_session(name):
    """A :class:`BatchMixin` method: from the store while starting, then the session's."""
    from_store = getattr(BatchMixin, name)

    def method(self, *args, **kwargs):
        live = self._live()
        if live is not None:
            return getattr(live, name)(*args, **kwargs)
        if self.store is None:  # a new project, before its session made the store
            if name in ("pick", "pick_many", "answer", "label", "skip"):
                return getattr(self._wait_or_raise(), name)(*args, **kwargs)
            return _NOTHING_YET.get(name)  # release, leave: nothing held; no image yet
        return from_store(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = from_store.__doc__
    return method


class StartingSession(BatchMixin):
    """A labelling session being loaded, serving its pending batch from the store meanwhile.

    Parameters
    ----------
    project : str or path-like
        An existing project folder (with ``labels.sqlite``); for a new one, see
        :meth:`new_project`.
    build : callable
        Returns the :class:`~skpeal.labeling.LabelingSession` of the project (called once,
        by :meth:`start`, in a background thread: it may import torch).
    lease_seconds : float, default=600
        How long an image handed to one client stays reserved for it (as the session's).
    annotator : str, optional
        Stored with the answers given while the model loads (default: the login name, as
        the session's; give the session's own).

    Attributes
    ----------
    store : LabelStore or None
        The project's label store (a new project's: its session's, once built).
    session : LabelingSession or None
        The session, once built.
    error : str or None
        Why building or preparing the session failed.
    build_error : Exception or None
        The exception of ``build`` (then there is no session).
    on_build_error : callable or None
        Called with that exception (e.g. :func:`~skpeal.labeling.app.serve` stops the
        server: a project that cannot be opened is an error, as without a restart).

    Raises
    ------
    ValueError
        The folder is not a project with classes and images.
    """

    starting = True  # the web app waits for the session where it needs the model

    def __init__(self, project, build, *, lease_seconds=600.0, annotator=None):
        self.project = Path(project)
        if not (self.project / "labels.sqlite").exists():
            raise ValueError(f"{self.project} is not a labelling project (no labels.sqlite)")
        self._own_store = LabelStore(self.project)
        classes = self.store.get_meta("classes")
        rows = self.store.images()
        if classes is None or not rows:
            self.store.close()
            raise ValueError(f"{self.project} has no classes or no images yet: open it with "
                             "LabelingSession(project, images=..., classes=...)")
        settings = self.store.get_meta("settings") or {}
        self.batch_size = int(settings.get("batch_size", 10))
        self.preselect_threshold = float(settings.get("preselect_threshold", 0.8))
        self._init = settings.get("init")
        self.random_state = int(settings.get("random_state", 0))
        self._setup(build, classes, rows, lease_seconds, annotator)

    def _setup(self, build, classes, rows, lease_seconds, annotator=None):
        self.classes = list(classes)
        self.annotator = default_annotator(annotator)
        self._encoded = None  # every image may be picked (BatchMixin._query_args)
        self._ahead = []  # image ids picked ahead without the model (dropped at the handover)
        self._handover = False  # the session is built: nothing more picked without it
        self.lease_seconds = float(lease_seconds)
        self._ids = [int(r[0]) for r in rows]
        self._paths = [r[1] for r in rows]
        self._row = {i: k for k, i in enumerate(self._ids)}
        self._lock = threading.RLock()
        self._state = {"phase": "loading", "done": 0, "total": 0, "error": None}
        self._build = build
        self.session = None
        self.error = None
        self.build_error = None
        self.on_build_error = None
        self._started = threading.Event()

    @classmethod
    def new_project(cls, project, build, *, images, classes, lease_seconds=600.0):
        """A new project's session being built: nothing to serve until its first batch.

        ``build`` (run by :meth:`start`) lists the images, makes the project folder and
        loads the model; until its session gives the first batch, the page says the
        model is loading. What can be checked without that is checked here, before
        anything is made.

        Parameters
        ----------
        project : str or path-like
            The project folder (without ``labels.sqlite``: it is made by ``build``).
        build : callable
            Returns the new :class:`~skpeal.labeling.LabelingSession`.
        images : str or path-like
            The folder of images ``build`` lists.
        classes : list of str
            The class names.
        lease_seconds : float, default=600
            As for the session.

        Returns
        -------
        starting : StartingSession
            Without a store until ``build`` has made it.

        Raises
        ------
        ValueError
            Bad class names, ``images`` not a folder, or ``project`` is a project already.
        """
        if classes is None:
            raise ValueError(NEW_PROJECT_CLASSES)
        classes = check_classes(classes)
        if not Path(images).is_dir():
            raise ValueError(f"images: {os.fspath(images)!r} is not a folder")
        if (Path(project) / "labels.sqlite").exists():
            raise ValueError(f"{os.fspath(project)} is a project already: open it with "
                             "StartingSession(project, build)")
        self = cls.__new__(cls)
        self.project = Path(project)
        self._own_store = None
        self._init = None  # nothing is served before the session
        self._setup(build, classes, [], lease_seconds)
        return self

    @property
    def store(self):
        own = self._own_store
        if own is not None:
            return own
        return None if self.session is None else self.session.store

    # ------------------------------------------------------------------ start-up
    def start(self):
        """Build and prepare the session (in a background thread); errors are re-raised."""
        try:
            try:
                session = self._build()
            except Exception as exc:  # e.g. options that contradict the project's
                self.build_error = exc
                if self.on_build_error is not None:
                    self.on_build_error(exc)
                raise
            with self._lock:  # a batch picked ahead without the model and not shown yet
                self._handover = True  # goes: the model picks the next one
                if self._ahead:
                    self.store.set_pending([], max(self.round, 0), only=self._ahead)
            self.session = session
            if not session.ready:
                session.prepare()
        except Exception as exc:
            self.error = str(exc)
            raise
        finally:
            self._started.set()
        return self

    def wait(self, timeout=WAIT_SECONDS) -> bool:
        """Wait up to ``timeout`` seconds for the session to serve (or :meth:`start` to fail).

        Returns whether it did: the session is ``ready`` (its preparation may go on behind,
        e.g. encoding the rest of the pool), or :meth:`start` ended.
        """
        deadline = time.monotonic() + timeout
        while not self._started.is_set():
            if self._live() is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._started.wait(min(left, _POLL_SECONDS))
        return True

    @property
    def loading(self) -> bool:
        """Whether the model is still loading: nothing failed yet, no session serves yet."""
        return self._live() is None and not self._started.is_set()

    def _live(self):
        """The session once it can give batches, else None (the store answers)."""
        session = self.session
        if session is not None and session.ready:
            return session
        return None

    def _wait_or_raise(self):
        if not self.wait():
            raise RuntimeError("the model is still loading: try again in a moment (your "
                               "picks are saved)")
        if self.session is None:
            raise RuntimeError(f"the session could not be opened: {self.error}")
        return self.session

    @property
    def without_model(self) -> bool:
        """Whether answers, undo and new batches are served from the store while the model
        loads (a project whose first batch needed no model: the next ones need none)."""
        return self._init in MODEL_FREE_INIT and self.store is not None and self.loading \
            and not self._handover

    @property
    def ready(self) -> bool:
        """Whether a batch can be given: the pending batch while loading (or, without the
        model, a new one), then the session's."""
        if self._live() is not None:
            return True
        if self._started.is_set() or self.store is None:
            return False
        return self.without_model or bool(self.store.pending())

    @property
    def streaming(self) -> bool:
        live = self._live()
        return False if live is None else live.streaming

    @property
    def state(self) -> dict:
        """``phase`` ``"loading"`` until the session is built, then the session's state."""
        return self._state if self.session is None else self.session.state

    @property
    def round(self) -> int:
        """The current model's round (while loading: the last stored round's)."""
        if self.session is not None:
            return self.session.round
        rounds = self.store.rounds() if self.store is not None else []
        return rounds[-1]["round"] if rounds else -1

    @property
    def n_images(self) -> int:
        """The number of images of the project (the session's, once built)."""
        return len(self._ids) if self.session is None else self.session.n_images

    def _refill(self, reset=False, need=None):
        """No model yet: the pending batch is what there is (the session tops it up); for
        a project served :attr:`without_model`, a batch picked the way its first one was
        (the images labelled or pending clustered too), with no suggestion."""
        if self.without_model:
            self._add_pending(self._rows_without_model(reset, need))

    def _rows_without_model(self, reset=False, need=None):
        remaining, n, labelled, _, pending = self._query_args(reset, need)
        if n == 0:
            return []
        seed = derive_seed("without-model", self.random_state, len(self.store.in_force()),
                           len(pending))
        return list(first_rows(self._init, self._paths, remaining, n, seed, labelled=labelled
                               + [self._row[p["image_id"]] for p in pending]))

    def _add_pending(self, rows):
        self.store.add_pending([(self._ids[r], None, None) for r in rows], max(self.round, 0))

    def status(self) -> dict:
        """The session's status; while loading, what the store knows (see ``status``)."""
        live = self._live()
        if live is not None:
            return live.status()
        store = self.store
        counts = {c: 0 for c in self.classes}
        n_skipped = 0
        for r in store.in_force() if store is not None else []:
            if r["kind"] == "label":
                counts[r["label"]] = counts.get(r["label"], 0) + 1
            else:
                n_skipped += 1
        rounds = store.rounds() if store is not None else []
        return {"n_images": self.n_images, "n_labelled": sum(counts.values()),
                "n_skipped": n_skipped, "counts": counts, "classes": list(self.classes),
                "round": rounds[-1]["round"] if rounds else -1,
                "model_version": None,
                "estimated_accuracy": rounds[-1]["estimated_accuracy"] if rounds else None,
                "rounds": [{k: r[k] for k in ("round", "n_labels", "estimated_accuracy",
                                              "fit_seconds")} for r in rounds],
                "n_pending": len(store.pending()) if store is not None else 0,
                "state": dict(self.state),
                "stop_suggestion": None}

    def __getattr__(self, name):
        # everything else is the session's (refit, exports, stale, ...): wait for it
        if name.startswith("_") or name in ("session", "error", "build_error",
                                            "on_build_error"):
            raise AttributeError(name)
        return getattr(self._wait_or_raise(), name)

    def close(self):
        """Close the store, and the session when built."""
        if self._own_store is not None:
            self._own_store.close()
        if self.session is not None:
            self.session.close()

    next_batch = _store_or_session("next_batch")
    holds = _store_or_session("holds")
    has_unleased = _store_or_session("has_unleased")
    release = _store_or_session("release")
    leave = _store_or_session("leave")
    image_path = _store_or_session("image_path")
    has_labels = _store_or_session("has_labels")
    pick = _store_or_session("pick")
    pick_many = _store_or_session("pick_many")
    undo_pick = _store_or_session("undo_pick")
    answer = _store_or_session("answer")
    label = _store_or_session("label")
    skip = _store_or_session("skip")

    def pick_ahead(self, **kwargs) -> bool:
        """The session's :meth:`~skpeal.labeling.LabelingSession.pick_ahead`; while
        loading, :attr:`without_model`, the next batch (picked as by a submit, stored
        held by no client, so the submit after the batch on screen gets it at once; once
        the session is built, it is dropped unless shown); else nothing: False."""
        live = self._live()
        if live is not None:
            return live.pick_ahead(**kwargs)
        if not self.without_model or self.has_unleased():
            return False
        rows = self._rows_without_model()  # outside the lock: picks and undo go on meanwhile
        ids = [self._ids[r] for r in rows]
        with self._lock:  # stored unless the model or another batch came first
            taken = {r["image_id"] for r in self.store.in_force() + self.store.pending()
                     + self.store.reopened()}
            if not rows or not self.without_model or self.has_unleased() or taken & set(ids):
                return False
            self._add_pending(rows)
            self._ahead += ids
            return True

    def picked_ahead(self) -> bool:
        """The session's ``picked_ahead``; while loading whether a batch is stored ahead."""
        live = self._live()
        if live is None:
            return self.without_model and self.has_unleased()
        return live.picked_ahead()

    @property
    def _round(self):  # the model an answer stored while loading records (BatchMixin.answer)
        rounds = self.store.rounds()
        return rounds[-1]["round"] if rounds else -1

    @property
    def _version(self):
        rounds = self.store.rounds()
        return rounds[-1]["model_version"] if rounds else None

    def undo(self, *, client=None, annotator=None, seq=None):
        """The session's ``undo``; while loading, a pick is undone from the store alone
        (the undo of a submitted answer too :attr:`without_model`, else it waits for the
        session)."""
        live = self._live()
        if live is None:
            if self.without_model:
                return BatchMixin.undo(self, client=client, annotator=annotator, seq=seq)
            undone = self.undo_pick(client=client, seq=seq)
            if undone is not None:
                return undone
            live = self._wait_or_raise()
        return live.undo(client=client, annotator=annotator, seq=seq)
