"""The labelling session: the active-learning loop with any oracle (a person or a script).

A :class:`LabelingSession` owns a project folder::

    <project>/labels.sqlite          the label store (see skpeal.labeling.store)
    <project>/models/round-N.safetensors   the adapter of every round's model
    <project>/thumbs/                thumbnails (web app)
    <project>/features/              the pool's image features (frozen image tower), so a
                                     restarted session encodes nothing again

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

import threading
import time
from pathlib import Path

import numpy as np

from .. import strategies
from .._io import atomic_path
from .._validation import derive_seed
from ..estimator import CLIPAdapterClassifier
from . import export, labelstudio
from ._checks import NEW_PROJECT_CLASSES, check_classes, check_session_params, default_annotator
from ._project import (
    check_estimator,
    collect_images,
    estimator_params,
    read_meta,
    resolve_settings,
    resolve_strategy,
    round_adapter_path,
)
from ._ray import RayScoring
from .batches import BatchMixin
from .export import folder_name  # noqa: F401  (its historical home)
from .loop import ENCODE_CHUNK, ActiveLearningLoop, PoolScores, image_side_cached
from .project_features import ProjectFeatures
from .stop import SessionStopping
from .store import LabelStore

__all__ = ["LabelingSession", "collect_images"]

#: Images of a new project encoded before its first batch is shown (a seeded random
#: sample; the rest is encoded while the person answers).
FIRST_ENCODED = 64

class LabelingSession(BatchMixin):
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
        session). Default: the project's (a project remembers the parameters of the
        estimator it was created with; another backbone or adapter raises), else
        ``CLIPAdapterClassifier()`` (ViT-B-32, OpenAI weights).
    strategy : str or callable, optional
        How the next batch is picked: a registered strategy name (see
        :func:`skpeal.strategies.strategy_names`) or a query function. Default: the
        one the project last used, else ``"auto"`` (DropQuery until 10 labels per
        class, then margin sampling with PCB: see
        :func:`skpeal.strategies.auto_sampling`). Unlike the settings below it may change
        when a project is reopened; a registered name is remembered for the next time.
    balance : {"pcb", "none"}, optional
        Default: the project's, else ``"pcb"``. Like ``gamma``, ``init``, ``batch_size``,
        ``random_state``, ``train_batch`` and ``preselect_threshold``, a project
        remembers it; another value than the project's raises.
        ``"pcb"``: wrap ``strategy`` with :func:`skpeal.strategies.class_balanced` (never
        :func:`~skpeal.strategies.random_sampling`).
    gamma : float, optional (project's, else 0.1)
        PCB candidate fraction.
    init : {"zero-shot", "random", "pixels"}, optional (project's, else "zero-shot")
        The first batch: picked by ``strategy`` on the zero-shot model, drawn at random
        (the paper's protocol) or covering the images' pixels. The zero-shot model's
        suggestions are shown in each case (once it is loaded).
    batch_size : int, optional (project's, else 10)
        Images per batch.
    annotator : str, optional
        Stored with every answer (default: the login name).
    random_state : int, optional (project's, else 0)
        Seeds every round's fit and query (round ``r`` always gets the same seeds; see
        :mod:`skpeal.labeling.loop`).
    lease_seconds : float, default=600
        How long an image handed to one client stays reserved for it.
    train_batch : {"labels", "estimator"}, optional (project's, else "labels")
        The training batch of every refit. ``"labels"``: all labels in one batch (one
        step per epoch) when the estimator keeps the image tower frozen with cached
        features (the prompt adapter, or LoRA on the text tower only, with
        ``feature_cache=True``), else the estimator's ``batch_size``. A step's cost is
        then the text tower's, whatever the number of labels, so the wait per round
        stops growing with the labels (see the "Label your own images" guide for the
        measured wait and accuracy). ``"estimator"``: always the estimator's
        ``batch_size``.
    preselect_threshold : float, optional (project's, else 0.8)
        A suggestion whose probability is at least this is pre-selected on the page (a
        submit without touching the image accepts it); below it the suggestion is shown
        but the image starts unanswered. 1.0: never pre-select; 0.0: always.
    ray : str, optional
        A Ray address: encode and score the pool there (:mod:`skpeal.labeling._ray`).

    Attributes
    ----------
    store : LabelStore
        The label store.
    loop : ActiveLearningLoop
        The round logic (built from ``estimator``, ``strategy``, ``balance``, ``gamma``,
        ``init``, ``train_batch`` and ``random_state``).
    state : dict
        What the session is doing: ``phase`` (``"new"``, ``"loading"`` (the backbone),
        ``"encoding"``, ``"ready"``, ``"training"``, ``"scoring"``), ``done`` and
        ``total`` (progress of the phase), ``error`` (the last failed refit's message, or None).
    """

    def __init__(self, project, images=None, classes=None, *, classnames=None, estimator=None,
                 strategy=None, balance=None, gamma=None, init=None, batch_size=None,
                 annotator=None, random_state=None, lease_seconds=600.0, train_batch=None,
                 preselect_threshold=None, ray=None):
        self.project = Path(project)
        # a project remembers its estimator and settings (given other ones: an error)
        meta = read_meta(self.project)
        settings = resolve_settings(self.project, meta.get("settings", {}), dict(
            batch_size=batch_size, balance=balance, gamma=gamma, init=init,
            train_batch=train_batch, random_state=random_state,
            preselect_threshold=preselect_threshold))
        batch_size, random_state = settings["batch_size"], settings["random_state"]
        preselect_threshold = settings["preselect_threshold"]
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        check_session_params(estimator, lease_seconds)
        strategy, strategy_name = resolve_strategy(strategy, meta.get("strategy"))
        if estimator is None:
            estimator = CLIPAdapterClassifier(**meta["estimator"]) if "estimator" in meta \
                else CLIPAdapterClassifier()
        elif "estimator" in meta:
            check_estimator(self.project, meta["estimator"], estimator)
        # the round logic (checks its own parameters before anything is created on disk)
        self.loop = ActiveLearningLoop(
            estimator, classnames=classnames, strategy=strategy, random_state=random_state,
            **{k: settings[k] for k in ("balance", "gamma", "init", "train_batch")})
        # check what can be checked before anything is created on disk
        new_paths = None if images is None else collect_images(images, exclude=self.project)
        self._ray = RayScoring(ray, self.project)  # falsy without an address
        if classes is not None:
            classes = check_classes(classes)
        elif not (self.project / "labels.sqlite").exists():
            raise ValueError(NEW_PROJECT_CLASSES)
        self.project.mkdir(parents=True, exist_ok=True)
        self.store = LabelStore(self.project)
        stored = self.store.get_meta("classes")
        if classes is None:
            if stored is None:
                raise ValueError(NEW_PROJECT_CLASSES)
            classes = stored
        classes = check_classes(classes)
        if stored is not None and stored != classes:
            raise ValueError(
                f"{self.project} is a project with classes {stored}; got {classes}. Use "
                "another project folder for other classes"
            )
        if stored is None:
            self.store.set_meta("classes", classes)
        if "estimator" not in meta:
            self.store.set_meta("estimator", estimator_params(estimator))
        if "settings" not in meta:
            self.store.set_meta("settings", settings)
        if strategy_name is not None and meta.get("strategy") != strategy_name:
            self.store.set_meta("strategy", strategy_name)
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
        self.annotator = default_annotator(annotator)
        self.random_state = int(random_state)
        self.lease_seconds = float(lease_seconds)
        if isinstance(preselect_threshold, bool) or not isinstance(
                preselect_threshold, (int, float, np.floating)) or not \
                0.0 <= preselect_threshold <= 1.0:
            raise ValueError("preselect_threshold must be a number in [0, 1], got "
                             f"{preselect_threshold!r}")
        self.preselect_threshold = float(preselect_threshold)
        self.state = {"phase": "new", "done": 0, "total": 0, "error": None}
        self._lock = threading.RLock()
        self._fit_lock = threading.Lock()
        self._model = None
        self._scores = None  # PoolScores of the current model over every image
        self._round = -1
        self._version = None
        self._n_queries = 0
        # stopping suggestions (skpeal.labeling.stop): replaced to change the criteria
        self._features = ProjectFeatures(self.project / "features")
        self._encoded = None  # while round 0 streams: the pool rows encoded so far
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
    def streaming(self) -> bool:
        """Whether round 0 gives batches while the pool is still being encoded."""
        return self._encoded is not None

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

    def _score(self, est, phase):
        """The model's :class:`~skpeal.labeling.loop.PoolScores` over every image."""
        self.state.update(phase=phase, done=0, total=len(self._paths))
        if self._ray:  # on the cluster: the same scores
            return self._ray.pool_scores(est, self._paths, self.loop.strategy, self.state)
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
            self.state.update(phase="loading", done=0, total=0)
            self._features.load()  # encoded before: not encoded again
            rounds = self.store.rounds()
            est = None
            if rounds:
                last = rounds[-1]["round"]
                path = round_adapter_path(self.project, last)
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
                    self._fit_and_swap(rnd, labels, keep_batch=True)
                    return self
                est = self.loop.zero_shot(self._paths)
                self._save_adapter(est, rnd)
            if not rounds and self._streamable(est):
                scores = self._score_streamed(est, rnd)
            else:
                self.state.update(phase="encoding")
                scores = self._score(est, "encoding")
            self._features.save(est, self._paths)
            labels = self.store.labelled()
            if not any(r["round"] == rnd for r in rounds):  # zero-shot: fitted on no label
                rows = [self._row[i] for i in labels]  # (given while it loaded: stale)
                self.store.add_round(rnd, f"round-{rnd}", 0,
                                     self._estimate(scores.proba, rows), 0.0)
            self.stopping.observe(rnd, scores.proba, self._row, self._classes_sorted())
            with self._lock:
                self._install(est, rnd, scores)
                self._encoded = None  # with the full scores, never before them
                if not self.store.pending():
                    self._refill(reset=True)
            self.state.update(phase="ready")
        return self

    def _streamable(self, est) -> bool:
        """Whether round 0 may show a first batch before the whole pool is encoded."""
        record = strategies.get_strategy(self.loop.strategy or strategies.entropy_sampling,
                                         None)
        return (image_side_cached(est) and record is not None and not record.needs_labels
                and len(self._paths) > FIRST_ENCODED)

    def _score_streamed(self, est, rnd):
        """Round 0 over a pool still being encoded: a first batch from the images encoded
        so far (:data:`FIRST_ENCODED`: the pending batch's, for its suggestions, and a
        seeded random sample), then the rest, in chunks of :data:`FIRST_ENCODED`.

        The first batch is installed and stored as soon as the sample is scored (the
        session is ``ready``); each chunk joins the images the next batches are picked
        among (features written to the project every 4,096, so a restart resumes); the
        full scores then replace the partial ones. The pending batch is kept throughout.
        """
        n = len(self._paths)
        order = np.random.default_rng(derive_seed("first-encoded", self.random_state)
                                      ).permutation(n)
        shown = np.isin(order, [self._row[p["image_id"]] for p in self.store.pending()])
        order = np.concatenate([order[shown], order[~shown]])
        first, rest = np.sort(order[:FIRST_ENCODED]), np.sort(order[FIRST_ENCODED:])
        record = strategies.get_strategy(self.loop.strategy or strategies.entropy_sampling)
        with_features = record.uses_features  # e.g. "auto" (DropQuery): the features too

        def encode(rows, on_ray=False):
            paths = [self._paths[k] for k in rows]
            if self._ray:  # the first sample here (its features stored), the rest on Ray
                return self._ray.scores(est, paths, self.loop.strategy, local=not on_ray,
                                        progress=lambda d: self.state.update(done=len(first) + d))
            if with_features:
                return est.predict_proba_embed(paths)
            return est.predict_proba(paths), None

        self.state.update(phase="encoding", done=0, total=n)
        proba = np.full((n, len(self.classes)), np.nan)
        proba[first], f = encode(first)
        # np.zeros: pages come from the system as rows are written (a NaN fill and a copy
        # of the 1 GB features of 100,000 images took seconds before the first batch)
        feats = None if f is None else np.zeros((n, f.shape[1]), dtype=f.dtype)
        if f is not None:
            feats[first] = f
        self.state.update(done=len(first))
        with self._lock:
            encoded = np.zeros(n, dtype=bool)
            encoded[first] = True
            # the arrays filled below: only the rows marked encoded are queried (final);
            self._encoded = encoded  # streaming before ready (both are read unlocked)
            self._install(est, rnd, PoolScores(est.classes_, proba, feats))
            if not self.store.pending():  # a restart while encoding keeps its batch
                self._refill(reset=True)
        step = max(1, len(rest)) if self._ray else min(ENCODE_CHUNK, FIRST_ENCODED)  # Ray: 1
        for start in range(0, len(rest), step):
            rows = rest[start:start + step]
            p, f = encode(rows, bool(self._ray))
            with self._lock:  # picks read only the rows marked encoded (final)
                proba[rows], encoded[rows] = p, True
                if feats is not None:
                    feats[rows] = f
            self.state.update(done=len(first) + start + len(rows))
            if (start + len(rows)) // 4096 > start // 4096:  # a restart (kill -9) resumes
                self._features.save(est, self._paths)
        return PoolScores(est.classes_, proba, feats)  # streaming until prepare installs it

    def _save_adapter(self, est, rnd):
        with atomic_path(round_adapter_path(self.project, rnd)) as tmp:
            est.save_adapter(tmp)

    def _install(self, est, rnd, scores):  # under the lock; stopping.observe before it
        self._model, self._round, self._version = est, rnd, f"round-{rnd}"
        self._scores, self._n_queries = scores, self._queries_of(rnd)
        self._suggest_pending()  # a batch picked before the model: its suggestions now

    def refit(self, *, keep_batch=False):
        """Train a fresh adapter on every label in force, rescore the pool, new batch.

        The pending batch is replaced by the new model's picks (items a client holds or
        a person has picked a class for stay). Labels given while this runs are kept and
        go into the next refit.

        Parameters
        ----------
        keep_batch : bool, default=False
            Keep a non-empty pending batch as it is (a refit after a restart: the person
            sees the same batch, in the same order); the batches stored ahead of it (never
            handed to a client; all but the next one when none was) are replaced.

        Returns
        -------
        info : dict
            ``round``, ``n_labels``, ``estimated_accuracy``, ``fit_seconds``.
        """
        with self._fit_lock:
            labels = self.store.labelled()
            if not labels:
                raise ValueError("refit: no label yet; label some images first")
            return self._fit_and_swap(self._round + 1, labels, keep_batch=keep_batch)

    def _fit_and_swap(self, rnd, labels, keep_batch=False):
        t0 = time.perf_counter()
        self.state.update(phase="training", done=0, total=len(labels), error=None)
        try:
            ids = sorted(labels, key=self._row.__getitem__)  # pool order, as the runner
            est = self.loop.fit(rnd, [self._paths[self._row[i]] for i in ids],
                                [labels[i] for i in ids])
            fit_seconds = time.perf_counter() - t0
            self._save_adapter(est, rnd)
            scores = self._score(est, "scoring")
            self._features.save(est, self._paths)
        except Exception as exc:
            self.state.update(phase="ready" if self.ready else "new", error=str(exc))
            raise
        acc = self._estimate(scores.proba, [self._row[i] for i in ids])
        self.store.add_round(rnd, f"round-{rnd}", len(ids), acc, fit_seconds)
        if not keep_batch:  # the new model's pick, outside the lock (see pick_ahead)
            self.pick_ahead(scores=scores, round=rnd, reset=True)
        self.stopping.observe(rnd, scores.proba, self._row, self._classes_sorted())
        with self._lock:  # held for no pick (made above) nor statistics (just above)
            if keep_batch:  # batches shown stay, the old model's batches never shown go
                pending = self.store.pending()
                ahead = [p["image_id"] for p in pending if p["leased_at"] is None]
                shown = 0 if len(ahead) < len(pending) else self.batch_size
                self.store.set_pending([], rnd, only=ahead[shown:])
            self._install(est, rnd, scores)
            if not (keep_batch and self.store.pending()):
                self._refill(reset=True)
        acc = self.stopping.estimates().get(rnd, acc)  # as status() shows it
        self.state.update(phase="ready")
        return {"round": rnd, "n_labels": len(ids), "estimated_accuracy": acc,
                "fit_seconds": fit_seconds}

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """Where the session stands.

        Returns
        -------
        status : dict
            ``n_images``, ``n_labelled``, ``n_skipped``, ``counts`` (labels per class,
            in class order), ``round``, ``model_version``, ``estimated_accuracy`` (the current
            model's accuracy on the unlabelled pool as estimated by
            :func:`skpeal.stopping.accuracy_interval`: its top-class probabilities
            recalibrated on the labels it had not seen), ``rounds``
            (one dict per fitted model: the learning curve), ``n_pending`` (images picked
            and not answered yet, the batches picked ahead included), ``state``,
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
        recal = self.stopping.estimates()  # recalibrated on out-of-sample answers
        for r in rounds:
            r["estimated_accuracy"] = recal.get(r["round"], r["estimated_accuracy"])
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
        if self.streaming:
            raise RuntimeError("the images are still being encoded; predictions come when "
                               f"all are ({self.state['done']} / {self.state['total']})")
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
    def export_csv(self, path=None, *, history=False):
        """The labels in force (or the whole history) as CSV.

        See :func:`skpeal.labeling.export.export_csv`.

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
        return export.export_csv(self, path, history=history)

    def export_folder(self, out) -> int:
        """Copy every labelled image to ``<out>/<class>/<file>``.

        See :func:`skpeal.labeling.export.export_folder`.

        Parameters
        ----------
        out : str or path-like
            The folder to fill (created).

        Returns
        -------
        n : int
            Files copied.
        """
        return export.export_folder(self, out)

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
        """Save the current model's adapter (else the last round's, as saved: no training).

        Parameters
        ----------
        path : str or path-like
            The safetensors file to write (see ``CLIPAdapterClassifier.save_adapter``;
            ``load_adapter`` reads it back).

        Returns
        -------
        round : int
            The round of the exported adapter.

        Raises
        ------
        RuntimeError
            When no round has been fitted yet.
        """
        return export.export_adapter(self, path)

    def close(self):
        """Close the label store (everything is already committed) and stop Ray's actors."""
        self.store.close()
        self._ray.close()
