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
"""

from __future__ import annotations

import numpy as np

from ..stopping import EstimatedAccuracy, KappaAverage

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

    Attributes
    ----------
    stop_ids : list of int
        The image ids of the stop set.
    criteria : dict
        ``{"estimated_accuracy": EstimatedAccuracy, "kappa_average": KappaAverage}``,
        replayed over every stored round.
    """

    def __init__(self, store, image_ids, classes, *, random_state=0, stop_set_size=200,
                 accuracy=None, kappa=None):
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
            "estimated_accuracy": accuracy if accuracy is not None else EstimatedAccuracy(),
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
        preds = self.store.get_meta("stop_predictions", {})
        if str(rnd) not in preds:
            rows = np.array([row_of[i] for i in self.stop_ids], dtype=np.intp)
            cls = np.asarray(classes_sorted, dtype=object)
            preds[str(rnd)] = [str(c) for c in cls[proba[rows].argmax(axis=1)]]
            self.store.set_meta("stop_predictions", preds)
        self.replay()

    def replay(self):
        """Feed every stored round, in order, to freshly reset criteria."""
        preds = self.store.get_meta("stop_predictions", {})
        acc, kappa = self.criteria["estimated_accuracy"], self.criteria["kappa_average"]
        acc.reset()
        kappa.reset()
        for r in self.store.rounds():
            if r["estimated_accuracy"] is not None:
                acc.update(estimate=min(1.0, max(0.0, float(r["estimated_accuracy"]))))
            if str(r["round"]) in preds:
                kappa.update(preds[str(r["round"])])

    def suggestion(self) -> dict:
        """The suggestion shown with the session's status.

        Returns
        -------
        suggestion : dict
            ``should_stop`` (any criterion suggests stopping), ``message`` (one line in
            plain words for the page), ``criteria`` (per criterion: ``name``, ``should_stop``,
            ``message``, ``signal``, ``n_updates``) and ``stop_set_size``.
        """
        out = []
        for name, crit in self.criteria.items():
            signal = crit.signal
            out.append({"name": name, "should_stop": bool(crit.should_stop),
                        "message": crit.message or "no round yet",
                        "signal": None if signal != signal else float(signal),
                        "n_updates": int(crit.n_updates_)})
        stop = [c for c in out if c["should_stop"]]
        lines = [_plain(self.criteria[c["name"]]) for c in (stop or out)]
        lines = [x for x in lines if x]
        message = ("You could stop labelling: " if stop else "Keep labelling: ") + \
            ("; ".join(lines) if lines else "no round yet") + "."
        return {"should_stop": bool(stop), "message": message, "criteria": out,
                "stop_set_size": len(self.stop_ids)}


def _plain(crit) -> str:
    """One criterion's state in plain words (the criteria's own messages are technical)."""
    if not crit.n_updates_:
        return ""
    if isinstance(crit, EstimatedAccuracy):
        text = f"the model estimates its accuracy at {crit.estimates_[-1]:.0%}"
        gain = crit.gains_[-1]
        if gain == gain:  # not NaN: enough rounds to judge the gain
            text += f" ({100 * gain:+.1f} points over the last {crit.window} rounds)"
        if crit.should_stop:
            reached = crit.target is not None and crit.estimates_[-1] >= crit.target
            text += ", its target" if reached else ", and it has stopped rising"
        return text
    if isinstance(crit, KappaAverage):
        mean = crit.signal
        if mean != mean:  # NaN: too few rounds
            return "too few rounds yet to see whether the predictions settle"
        if crit.should_stop:
            return f"the predictions have settled between rounds (agreement {mean:.2f})"
        return (f"the predictions still change between rounds (agreement {mean:.2f}; "
                f"settled from {crit.threshold:.2f})")
    return crit.message
