"""Stopping suggestions for a labelling session (never an automatic stop).

After every model round (round 0 and each refit) a :class:`SessionStopping` records the
stop-set predictions of the round's model, and replays every stored round through two
criteria of :mod:`skpeal.stopping`:

* :class:`~skpeal.stopping.EstimatedAccuracy`, fed the round's estimated accuracy on the
  unlabelled pool (the ``rounds`` table of the label store);
* :class:`~skpeal.stopping.KappaAverage`, fed the round's predictions on a fixed stop
  set: ``stop_set_size`` images drawn once with the session's seed.

Both the stop set (meta key ``stop_set``: image ids) and each round's predictions on it
(meta key ``stop_predictions``: ``{round: [label, ...]}``) live in the label store, so a
restarted session replays the same rounds on the same set and gives the same suggestion.

The estimate and its interval (:func:`skpeal.stopping.accuracy_interval`) are over the
images not labelled yet, recalibrated on the model's *out-of-sample answers*: for every
image labelled since round 0, the confidence and correctness of the model of the round
before its label was given (a model that never trained on it), recent answers weighing
more. The previous round's predictions are kept for that (meta key ``last_predictions``),
the answers accumulate (meta key ``oos_answers``: ``[round, confidence, right]``) and
the map learnt from them is applied to that previous model's confidences on the images
still unlabelled (the lagged estimate; the interval is widened when the batches of answers
scatter more than binomial noise, as when the model changes between rounds), and
every round's estimate and interval is stored (meta key ``accuracy_intervals``:
``{round: [estimate, low, high]}``); :meth:`SessionStopping.estimates` gives the
estimates the session's status shows. The
criterion never suggests stopping while the estimate is below ``floor`` nor, for a
plateau, while the interval is wider than ``max_half_width`` (3 points) on a side.
"""

from __future__ import annotations

import numpy as np

from ..stopping import EstimatedAccuracy, KappaAverage, accuracy_interval

__all__ = ["SessionStopping"]


class SessionStopping:
    """The stopping criteria of a :class:`~skpeal.labeling.LabelingSession`.

    Parameters
    ----------
    store : LabelStore
        The session's label store (stop set and predictions are kept in its meta).
    image_ids : sequence of int
        The ids of the session's images (the stop set is drawn from them once).
    classes : sequence of str
        The class names.
    random_state : int, default=0
        Seeds the draw of the stop set.
    stop_set_size : int, default=200
        Images in the stop set (all images when there are fewer).
    accuracy : EstimatedAccuracy, optional
        The calibrated criterion (default ``EstimatedAccuracy()``).
    kappa : KappaAverage, optional
        The criterion that needs no calibration (default ``KappaAverage(classes=...)``).
    floor : float or None, default=None
        The person's minimum accuracy: no stop suggestion while the estimate is below it
        (used by the default ``accuracy`` criterion).

    Attributes
    ----------
    stop_ids : list of int
        The image ids of the stop set.
    criteria : dict
        ``{"estimated_accuracy": EstimatedAccuracy, "kappa_average": KappaAverage}``,
        replayed over every stored round.
    """

    def __init__(self, store, image_ids, classes, *, random_state=0, stop_set_size=200,
                 accuracy=None, kappa=None, floor=None):
        self.store = store
        self.classes = sorted(classes)
        stored = store.get_meta("stop_set")
        known = {int(i) for i in image_ids}
        if stored is None or not all(int(i) in known for i in stored):
            ids = np.array(sorted(known), dtype=np.int64)
            n = min(int(stop_set_size), len(ids))
            rng = np.random.default_rng(int(random_state))
            stored = sorted(int(i) for i in rng.choice(ids, size=n, replace=False))
            store.set_meta("stop_set", stored)
            store.set_meta("stop_predictions", {})
        self.stop_ids = [int(i) for i in stored]
        self.criteria = {
            "estimated_accuracy": accuracy if accuracy is not None else EstimatedAccuracy(
                floor=floor, max_half_width=0.03),
            "kappa_average": kappa if kappa is not None else KappaAverage(classes=self.classes),
        }

    def observe(self, rnd, proba, row_of, classes_sorted):
        """Record round ``rnd``'s stop-set predictions (once) and replay every round.

        Parameters
        ----------
        rnd : int
            The round of the model that produced ``proba``.
        proba : ndarray of shape (n_images, n_classes)
            The round's probabilities over the pool (columns: ``classes_sorted``).
        row_of : dict
            Image id -> row of ``proba``.
        classes_sorted : array-like of str
            The column order of ``proba``.
        """
        self._record_interval(rnd, proba, row_of, classes_sorted)
        preds = self.store.get_meta("stop_predictions", {})
        if str(rnd) not in preds:
            rows = np.array([row_of[i] for i in self.stop_ids], dtype=np.intp)
            cls = np.asarray(classes_sorted, dtype=object)
            preds[str(rnd)] = [str(c) for c in cls[proba[rows].argmax(axis=1)]]
            self.store.set_meta("stop_predictions", preds)
        self.replay()

    def _record_interval(self, rnd, proba, row_of, classes_sorted):
        """Store round ``rnd``'s estimate and interval over the unlabelled images (once)."""
        intervals = self.store.get_meta("accuracy_intervals", {})
        if str(rnd) in intervals:
            return
        labelled = self.store.labelled()
        cls = np.asarray([str(c) for c in classes_sorted], dtype=object)
        free = np.array([r for i, r in row_of.items() if i not in labelled], dtype=np.intp)
        if free.size == 0:
            return
        last = self.store.get_meta("last_predictions")
        # every out-of-sample answer so far: [round, confidence, right] of the model of the
        # round before on each image labelled since (it never trained on those labels)
        answers = [a for a in self.store.get_meta("oos_answers", []) if int(a[0]) != rnd]
        if last is not None and int(last["round"]) < rnd:
            answers += [[int(rnd), float(last["conf"][k]),
                         bool(last["pred"][k] == str(labelled[int(i)]))]
                        for k, i in enumerate(last["ids"]) if int(i) in labelled]
            self.store.set_meta("oos_answers", answers)
        kw = {}
        ids = [int(i) for i, r in row_of.items() if i not in labelled]
        if answers:
            kw = dict(batch_confidence=[a[1] for a in answers],
                      batch_correct=[a[2] for a in answers],
                      batch_age=[rnd - int(a[0]) for a in answers])
            if last is not None and int(last["round"]) < rnd:
                # the previous model's confidence on the images still unlabelled: the map
                # fitted on its answers is applied to it (the lagged estimate)
                prev = dict(zip((int(i) for i in last["ids"]), last["conf"]))
                if all(i in prev for i in ids):
                    kw["previous_confidence"] = [prev[i] for i in ids]
        est, low, high = accuracy_interval(proba[free], **kw)
        intervals[str(rnd)] = [est, low, high]
        self.store.set_meta("accuracy_intervals", intervals)
        rows = np.array([row_of[i] for i in ids], dtype=np.intp)
        self.store.set_meta("last_predictions", {
            "round": int(rnd), "ids": ids,
            "pred": [str(c) for c in cls[proba[rows].argmax(axis=1)]],
            "conf": [float(c) for c in proba[rows].max(axis=1)]})

    def estimates(self):
        """The recalibrated estimate of each round that has one.

        Returns
        -------
        estimates : dict
            ``{round: estimate}`` (int to float), from the stored intervals.
        """
        intervals = self.store.get_meta("accuracy_intervals", {})
        return {int(r): float(v[0]) for r, v in intervals.items()}

    def replay(self):
        """Feed every stored round, in order, to freshly reset criteria."""
        preds = self.store.get_meta("stop_predictions", {})
        acc, kappa = self.criteria["estimated_accuracy"], self.criteria["kappa_average"]
        acc.reset()
        kappa.reset()
        intervals = self.store.get_meta("accuracy_intervals", {})
        for r in self.store.rounds():
            if r["estimated_accuracy"] is not None:
                iv = intervals.get(str(r["round"]))
                if iv is not None:  # the interval's own estimate (unlabelled images only)
                    acc.update(estimate=iv[0], interval=(iv[1], iv[2]))
                else:
                    acc.update(estimate=min(1.0, max(0.0, float(r["estimated_accuracy"]))))
            if str(r["round"]) in preds:
                kappa.update(preds[str(r["round"])])

    def suggestion(self) -> dict:
        """The suggestion shown with the session's status.

        Returns
        -------
        suggestion : dict
            ``should_stop`` (any criterion suggests stopping), ``message`` (one line in
            plain words for the page: the verdict, the criteria behind it, and the
            accuracy estimate with its interval, said once), ``criteria`` (per
            criterion: ``name``, ``should_stop``, ``message``, ``signal``, ``n_updates``),
            ``stop_set_size`` and ``accuracy``
            (:meth:`accuracy`: estimate, low, high; None before the first round).
        """
        out = []
        for name, crit in self.criteria.items():
            signal = crit.signal
            out.append({"name": name, "should_stop": bool(crit.should_stop),
                        "message": crit.message or "no round yet",
                        "signal": None if signal != signal else float(signal),
                        "n_updates": int(crit.n_updates_)})
        stop = [c for c in out if c["should_stop"]]
        shown = [c["name"] for c in (stop or out)]
        if "estimated_accuracy" in self.criteria and "estimated_accuracy" not in shown:
            shown.append("estimated_accuracy")  # the estimate is always said, and once
        lines = [_plain(self.criteria[name]) for name in shown]
        lines = [x for x in lines if x]
        if not lines:  # no criterion has a round to read (round 0 gives them none)
            lines = ["too few rounds yet to judge" if self.store.rounds() else "no round yet"]
        message = ("You could stop labelling: " if stop else "Keep labelling: ") + \
            "; ".join(lines) + "."
        return {"should_stop": bool(stop), "message": message, "criteria": out,
                "stop_set_size": len(self.stop_ids), "accuracy": self.accuracy()}

    def accuracy(self):
        """The latest estimate of the accuracy on the unlabelled images, with its interval.

        Returns
        -------
        accuracy : dict or None
            ``{"estimate": float, "low": float, "high": float}``; None before the first
            round.
        """
        crit = self.criteria["estimated_accuracy"]
        if not getattr(crit, "estimates_", None):
            return None
        low, high = crit.intervals_[-1] if getattr(crit, "intervals_", None) else (
            float("nan"),) * 2
        est = float(crit.estimates_[-1])
        if low != low:  # no interval stored for that round
            low = high = est
        return {"estimate": est, "low": float(low), "high": float(high)}


def _plain(crit) -> str:
    """One criterion's state in plain words, no figures but the estimate and its interval
    (the criteria's own messages, with their figures, are the page's details)."""
    if not crit.n_updates_:
        return ""
    if isinstance(crit, EstimatedAccuracy):
        text = f"the model estimates its accuracy at {crit.estimates_[-1]:.0%}"
        low, high = crit.intervals_[-1] if getattr(crit, "intervals_", None) else (None, None)
        if low is not None and low == low:
            text += f" (likely between {low:.0%} and {high:.0%})"
        gain = crit.gains_[-1]  # in points behind the details toggle, not here
        if gain == gain and gain > 0 and not crit.should_stop:
            text += ", still rising"
        if crit.should_stop:
            reached = crit.target is not None and crit.estimates_[-1] >= crit.target
            text += ", its target" if reached else ", and it has stopped rising"
        return text
    if isinstance(crit, KappaAverage):
        mean = crit.signal
        if mean != mean:  # NaN: too few rounds
            return "too few rounds yet to see whether the predictions settle"
        if crit.should_stop:  # the agreement and its threshold: behind the details toggle
            return "the predictions have settled between rounds"
        return "the predictions still change from one round to the next"
    return crit.message
