"""The rounds of pool-based active learning, whoever answers: :class:`ActiveLearningLoop`.

One round: the current model scores the pool, the query strategy picks a batch among the
images not yet answered, an oracle labels it, and a fresh adapter is trained on every
label so far (the model of the next round). Round 0's model is zero-shot from the class
names; with ``init="random"`` the first batch is drawn at random instead, with
``init="pixels"`` it covers the images' pixels (both need no model).

The loop has two drivers and no third copy:

* :class:`skpeal.labeling.LabelingSession`: a person answers through the label store and
  the web app, one step at a time (:meth:`ActiveLearningLoop.zero_shot`,
  :meth:`~ActiveLearningLoop.score`, :meth:`~ActiveLearningLoop.query`,
  :meth:`~ActiveLearningLoop.fit`);
* ``skpeal run`` (:func:`skpeal.experiment.run_experiment`): :meth:`ActiveLearningLoop.rounds`
  with a simulated oracle that reads the hidden labels, evaluating every round's model on
  the test split.

Both give the same images and the same models for the same pool, estimator, strategy and
``random_state`` (tested). Seeds, all from ``random_state`` through
:func:`skpeal._validation.derive_seed`:

* the model of round ``m`` (trained on the first ``m`` batches; ``m = 0`` is zero-shot):
  ``derive_seed("fit", random_state, m)``;
* the ``k``-th query of round ``m`` (``k > 0`` only when a session refills its batch
  after skips): ``derive_seed("query", random_state, m)`` or
  ``derive_seed("query", random_state, m, k)``;
* a first batch without a model: ``derive_seed("init", random_state)`` (and
  ``derive_seed("pixels", random_state)`` for its clustering)
  (:func:`~skpeal.labeling._project.first_rows`).

A strategy and its calibrated form (same query function, another estimator) therefore
draw the same PCB picks and tie-breaks in a round, and every strategy of a seed starts
from the same random first batch.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch

from .. import strategies
from .._pool import PoolScores
from .._validation import InvalidParameterError, check_choice, check_real, derive_seed
from ..adapters import adapter_names, frozen_towers
from ._project import first_rows
from .config import BALANCE, INIT, MODEL_FREE_INIT

__all__ = ["ActiveLearningLoop", "PoolScores"]

TRAIN_BATCH = ("estimator", "labels")

# Images per scoring call, the unit of progress reports: small while images are encoded
# (a visible progress bar), large when a frozen image tower rescores from cached features
# (then each call costs mostly one pass of the class prompts through the text tower).
ENCODE_CHUNK, CACHED_CHUNK = 512, 32768


def _rows(X, idx):
    """Rows ``idx`` of an array, tensor or sequence of images."""
    idx = np.asarray(idx, dtype=np.intp)
    if isinstance(X, (list, tuple)):
        return [X[i] for i in idx]
    return X[idx]


def _n_rows(X) -> int:
    return len(X) if isinstance(X, (list, tuple)) else int(X.shape[0])


def image_side_cached(est) -> bool:
    """Whether ``est`` trains on cached image features (frozen image tower, cache on)."""
    p = est.get_params()
    if p.get("adapter") not in adapter_names():  # not a CLIPAdapterClassifier
        return False
    vision_frozen, _ = frozen_towers(p["adapter"], p.get("lora_towers", "both"), params=p)
    return vision_frozen and bool(p.get("feature_cache", True))


class ActiveLearningLoop:
    """The round logic of pool-based active learning, with any oracle.

    Parameters
    ----------
    estimator : classifier
        The template of every round's model, cloned each round (e.g. a
        :class:`skpeal.CLIPAdapterClassifier`; any scikit-learn classifier with
        ``predict_proba`` and a ``random_state`` works, such as the runner's linear
        probe). It is never fitted itself.
    classes : array-like, optional
        Set as ``classes`` on every round's model (so round 0 can be zero-shot and every
        model has a column for every class).
    classnames : list or dict, optional
        Set as ``classnames`` on every round's model when given.
    strategy : callable, optional
        A query function ``f(classifier, X_pool, n_instances, *, random_state,
        X_labeled, y_labeled) -> (indices, scores)``. Default:
        :func:`skpeal.strategies.entropy_sampling`.
    balance : {"pcb", "none"}, default="pcb"
        Wrap ``strategy`` with :func:`skpeal.strategies.class_balanced`. Random sampling
        is never balanced (it would follow the model's pseudo-labels).
    gamma : float, default=0.1
        PCB candidate fraction, in (0, 1].
    init : {"zero-shot", "random", "pixels"}, default="zero-shot"
        The first batch: picked by ``strategy`` on the zero-shot model, drawn at random
        (the paper's protocol; also for strategies that need labelled images), or
        covering the images' pixels (:func:`~skpeal.labeling._project.first_rows`).
    warm_start : bool, default=False
        Train each round's adapter from the previous round's (its model object is
        refitted in place) instead of a fresh one.
    train_batch : {"estimator", "labels"}, default="estimator"
        ``"labels"``: every label in one training batch (one step per epoch) when the
        image tower is frozen with cached features, so a round's cost stops growing with
        the labels; ``"estimator"``: the estimator's ``batch_size``.
    random_state : int, default=0
        The seed of every fit and query (see the module docstring).
    scorer : skpeal.distributed.RayPoolScorer, optional
        Run every query on Ray instead of in this process (same picks).
    """

    def __init__(self, estimator, *, classes=None, classnames=None, strategy=None,
                 balance="pcb", gamma=0.1, init="zero-shot", warm_start=False,
                 train_batch="estimator", random_state=0, scorer=None):
        check_choice("balance", balance, BALANCE)
        check_choice("init", init, INIT)
        check_choice("train_batch", train_batch, TRAIN_BATCH)
        check_real("gamma", gamma, 0.0, 1.0, closed="right")
        if strategy is not None and not callable(strategy):
            raise InvalidParameterError(f"strategy must be a query function, got {strategy!r}")
        self.estimator = estimator
        self.classes, self.classnames = classes, classnames
        self.strategy = strategy
        self.balance, self.gamma, self.init = balance, gamma, init
        self.warm_start, self.train_batch = bool(warm_start), train_batch
        self.random_state = int(random_state)
        self.scorer = scorer

    # ------------------------------------------------------------------ models
    def estimator_for(self, m, n_labels=0, previous=None):
        """The unfitted model of round ``m`` (zero-shot when ``n_labels`` is 0).

        Parameters
        ----------
        m : int
            The round: the model is trained on the first ``m`` batches.
        n_labels : int, default=0
            Labels it will be trained on (0: a zero-shot model, ``max_epochs=0``).
        previous : classifier, optional
            The previous round's model: with ``warm_start`` (and labels), it is returned
            set to train on from its adapter.

        Returns
        -------
        estimator : classifier
            With the round's ``random_state`` and the loop's ``classes``/``classnames``.
        """
        params = {"random_state": derive_seed("fit", self.random_state, m)}
        if self.classes is not None:
            params["classes"] = list(self.classes)
        if self.classnames is not None:
            params["classnames"] = self.classnames
        est = clone(self.estimator)
        if n_labels == 0:
            params["max_epochs"] = 0
        else:
            if self.train_batch == "labels" and image_side_cached(est):
                params["batch_size"] = max(1, int(n_labels))
            if self.warm_start and previous is not None:
                params.update(max_epochs=est.get_params()["max_epochs"], warm_start=True)
                est = previous
        return est.set_params(**params)

    def zero_shot(self, X_pool):
        """The zero-shot model of round 0 (from the class names; no label).

        Parameters
        ----------
        X_pool : array-like or sequence of images
            The pool (one image is passed to ``fit`` to build the model).

        Returns
        -------
        model : classifier
            Fitted with ``max_epochs=0``.
        """
        return self.estimator_for(0).fit(_rows(X_pool, [0]))

    def fit(self, m, X, y, previous=None):
        """Train the model of round ``m`` on labelled images ``X`` with labels ``y``.

        Parameters
        ----------
        m : int
            The round (>= 1: trained on the first ``m`` batches).
        X : array-like or sequence of images
            The labelled images, in the order of training (callers pass them in pool
            order, so that a session and the runner train on the same sequence).
        y : array-like of shape (n_labels,)
            Their labels.
        previous : classifier, optional
            The previous round's model (used with ``warm_start``).

        Returns
        -------
        model : classifier
            Fitted.
        """
        return self.estimator_for(m, len(y), previous).fit(X, y)

    def score(self, model, X_pool, *, chunk=None, progress=None, features=True):
        """Score every pool image once: probabilities and (optionally) features.

        Parameters
        ----------
        model : classifier
            Fitted; ``predict_proba_embed`` is used when it has one.
        X_pool : array-like or sequence of images
            The pool.
        chunk : int, optional
            Images per call (the unit of ``progress``). Default: large when the model
            rescores from cached image features, else small.
        progress : callable, optional
            ``progress(done)`` after every chunk.
        features : bool, default=True
            Also keep the image features (when the model has ``predict_proba_embed``).

        Returns
        -------
        scores : PoolScores
            Over the pool's rows.
        """
        n = _n_rows(X_pool)
        if chunk is None:
            params = model.get_params() if hasattr(model, "get_params") else {}
            cached = params.get("feature_cache", False) and getattr(
                getattr(model, "model_", None), "vision_frozen", False)
            chunk = CACHED_CHUNK if cached else ENCODE_CHUNK
        probas, feats = [], []
        for start in range(0, n, chunk):
            rows = _rows(X_pool, np.arange(start, min(n, start + chunk)))
            if features and hasattr(model, "predict_proba_embed"):
                p, f = model.predict_proba_embed(rows)
                feats.append(np.asarray(f))
            else:
                p = model.predict_proba(rows)
            probas.append(np.asarray(p))
            if progress is not None:
                progress(min(n, start + chunk))
        return PoolScores(model.classes_, np.concatenate(probas),
                          np.concatenate(feats) if feats else None)

    def lazy_scores(self, model, X_pool):
        """:class:`PoolScores` of ``model`` computed on first use (see :meth:`score`).

        Parameters
        ----------
        model : classifier
            Fitted.
        X_pool : array-like or sequence of images
            The pool.

        Returns
        -------
        scores : PoolScores
            Over the pool's rows; the model scores the pool when a strategy first asks.
        """
        def compute(with_features):
            s = self.score(model, X_pool, features=with_features)
            return s.proba, s.features

        return PoolScores(model.classes_, compute=compute)

    # ------------------------------------------------------------------ queries
    def query_function(self):
        """The query function of every round: ``strategy``, through PCB when it uses the model.

        Random sampling (a strategy that does not look at the model) is never balanced.

        Strategies registered with ``pcb=False`` (those of
        :mod:`skpeal.strategies.lowbudget`, which cover or balance by themselves) are not
        wrapped either.

        Returns
        -------
        query : callable
            A query function with the signature of ``strategy``.
        """
        fn = self.strategy or strategies.entropy_sampling
        record = strategies.get_strategy(fn, None)
        if self.balance == "pcb" and (record is None or (record.uses_model and record.pcb)):
            fn = strategies.class_balanced(fn, self.gamma)
        return fn

    def query(self, m, n, remaining, *, scores=None, model=None, X_pool=None, labelled=(),
              y_labelled=(), k=0):
        """Pick ``n`` of the ``remaining`` pool rows for round ``m``.

        Parameters
        ----------
        m : int
            The round of the model that picks (0: the zero-shot model, or a random draw
            with ``init="random"``, or the pixels' pick with ``init="pixels"``).
        n : int
            Images to pick (at most ``len(remaining)``).
        remaining : array-like of int
            Pool rows not answered yet.
        scores : PoolScores, optional
            The model's scores of the whole pool (else computed from ``model`` and
            ``X_pool`` when the strategy needs them).
        model : classifier, optional
            The fitted model of round ``m`` (needed without ``scores``, and on Ray).
        X_pool : array-like or sequence of images, optional
            The pool (needed without ``scores``, on Ray, and for ``init="pixels"``'s
            first batch).
        labelled, y_labelled : array-like
            Pool rows labelled so far and their labels (class counts of PCB, the
            labelled set of coreset and featdist).
        k : int, default=0
            The query's number within the round (a session refilling after skips).

        Returns
        -------
        rows : ndarray of int
            The picked pool rows.
        """
        remaining = np.asarray(remaining, dtype=np.intp)
        n = min(int(n), remaining.size)
        if n == 0:
            return remaining[:0]
        if m == 0 and k == 0 and self.init in MODEL_FREE_INIT:
            return first_rows(self.init, X_pool, remaining, n, self.random_state)
        parts = ("query", self.random_state, m) + ((k,) if k else ())
        seed = derive_seed(*parts)
        labelled = np.asarray(labelled, dtype=np.intp)
        y_labelled = np.asarray(y_labelled)
        fn = self.query_function()
        if self.scorer is not None:  # the same selection, scored on Ray
            pos, _ = self.scorer.query(fn, model, _rows(X_pool, remaining), n,
                                       random_state=seed, X_labeled=_rows(X_pool, labelled),
                                       y_labeled=y_labelled)
        else:
            if scores is None:
                scores = self.lazy_scores(model, X_pool)
            pos, _ = fn(scores, remaining, n, random_state=seed, X_labeled=labelled,
                        y_labeled=y_labelled)
        return remaining[np.asarray(pos, dtype=np.intp)]

    # ------------------------------------------------------------------ the whole loop
    def rounds(self, X_pool, oracle, n_rounds, budget, *, labelled=(), y_labelled=(),
               start=0, model=None):
        """Run rounds ``start .. n_rounds - 1`` with a programmatic oracle.

        Every round queries ``budget`` images with the current model, asks ``oracle``
        for their labels and trains the next model on every label so far (in pool
        order).

        Parameters
        ----------
        X_pool : array-like or sequence of images
            The pool.
        oracle : callable
            ``oracle(rows) -> labels`` for an array of pool rows.
        n_rounds : int
            The last round is ``n_rounds - 1``.
        budget : int
            Images per round.
        labelled, y_labelled : array-like, optional
            Rows labelled in rounds ``0 .. start - 1`` and their labels (a resumed run).
        start : int, default=0
            The first round to run.
        model : classifier, optional
            The model that picks round ``start``'s batch. Default: zero-shot (round 0),
            or the model of round ``start`` refitted on ``labelled`` (deterministic).

        Yields
        ------
        round : sklearn.utils.Bunch
            ``round`` (the batch's round), ``selected`` (pool rows), ``labels``,
            ``labelled`` and ``y_labelled`` (everything so far), ``model`` (trained on
            them: the model of round ``round + 1``), ``query_time`` and ``fit_time``
            (seconds; query time includes scoring the pool and a zero-shot model).
        """
        n_pool = _n_rows(X_pool)
        labelled = np.asarray(labelled, dtype=np.intp)
        y_labelled = np.asarray(y_labelled)
        for rnd in range(start, n_rounds):
            remaining = np.setdiff1d(np.arange(n_pool), labelled)
            n = min(int(budget), remaining.size)
            if n == 0:
                return
            t0 = time.perf_counter()
            if model is None and not (rnd == 0 and self.init in MODEL_FREE_INIT):
                model = (self.zero_shot(X_pool) if rnd == 0 else
                         self._fit_sorted(rnd, X_pool, labelled, y_labelled))
            picked = self.query(rnd, n, remaining, model=model, X_pool=X_pool,
                                labelled=labelled, y_labelled=y_labelled)
            query_time = time.perf_counter() - t0
            answers = np.asarray(oracle(picked))
            labelled = np.concatenate([labelled, picked])
            y_labelled = np.concatenate([y_labelled, answers]) if y_labelled.size else answers
            t0 = time.perf_counter()
            model = self._fit_sorted(rnd + 1, X_pool, labelled, y_labelled, model)
            yield Bunch(round=rnd, selected=picked, labels=answers, labelled=labelled,
                        y_labelled=y_labelled, model=model, query_time=query_time,
                        fit_time=time.perf_counter() - t0)

    def _fit_sorted(self, m, X_pool, labelled, y_labelled, previous=None):
        order = np.argsort(labelled, kind="stable")
        return self.fit(m, _rows(X_pool, labelled[order]), y_labelled[order], previous)
