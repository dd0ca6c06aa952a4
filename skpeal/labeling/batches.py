"""The batches of a labelling session: what is on screen, picks, answers and undo.

:class:`BatchMixin` holds the methods of :class:`~skpeal.labeling.LabelingSession` that
hand images out and take the person's answers back; the session keeps the model state.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BatchMixin"]

#: Names of the query functions whose picks :meth:`BatchMixin.pick_ahead` computes ahead
#: (they keep their result for the same model, rows, size and seed).
_KEEPS_PICKS = ("dropquery_sampling", "auto_sampling")


#: Batches :meth:`BatchMixin.pick_ahead` keeps stored ahead (held by no client) when the
#: picks do not depend on the answers to come: the batch after the next one is picked
#: while the person answers, so that a pick that outlasts one batch of answers (DropQuery
#: over 10,000 images beside a refit, on a loaded machine) is still ready in time.
AHEAD = 2


def _keeps_picks(fn) -> bool:
    # skpeal.strategies imports modAL and with it torch: imported here, not at the top, so
    # that a restarted server serves its pending batch before torch is loaded
    from .. import strategies

    return any(fn is getattr(strategies, name) for name in _KEEPS_PICKS)


class BatchMixin:
    """The batch methods of :class:`~skpeal.labeling.LabelingSession` (not used alone)."""

    # ------------------------------------------------------------------ batches
    def _query_args(self, reset=False, need=None):
        """What :meth:`_refill` queries: ``(remaining, n, labelled rows, labels, keep)``."""
        answered = {r["image_id"] for r in self.store.in_force()}
        pending = self.store.pending()
        picked = self.store.picks(p["image_id"] for p in pending)
        keep = [p for p in pending if p["client"] is not None or p["image_id"] in picked] \
            if reset else pending
        taken = answered | {p["image_id"] for p in keep} | {
            r["image_id"] for r in self.store.reopened()}
        encoded = self._encoded  # round 0 while the pool is encoded: only what is
        remaining = np.array([k for k, i in enumerate(self._ids) if int(i) not in taken
                              and (encoded is None or encoded[k])], dtype=np.intp)
        n = min(self.batch_size if need is None else need, len(remaining))
        labels = self.store.labelled()
        return (remaining, n, [self._row[i] for i in labels], list(labels.values()), keep)

    def _items(self, rows):
        """Pending rows ``(image_id, suggestion, probability)`` of pool ``rows``."""
        cls = self._classes_sorted()
        return [(int(self._ids[r]), str(cls[self._proba[r].argmax()]),
                 float(self._proba[r].max())) for r in rows]

    def _suggest_pending(self):
        """Give the pending images picked before any model (``init`` "pixels" or "random")
        the current model's suggestion, where it has scored them (their place is kept)."""
        rows = [self._row[p["image_id"]] for p in self.store.pending()
                if p["suggestion"] is None]
        rows = [r for r in rows if np.isfinite(self._proba[r]).all()]
        if rows:
            self.store.add_pending(self._items(rows), self._round)

    def _queries_of(self, rnd) -> int:
        """The queries of round ``rnd`` the pending batch already is: 1 when it is that
        round's (a restart's, or the random first batch drawn before the model), else 0."""
        return int(any(p["round"] == rnd for p in self.store.pending()))

    def _refill(self, reset=False, need=None):
        """Query the current model for ``need`` more images (a full batch by default)."""
        remaining, n, rows_l, y_l, _ = self._query_args(reset, need)
        items = []
        if n > 0:
            rows = self.loop.query(self._round, n, remaining, scores=self._scores,
                                   X_pool=self._paths, labelled=rows_l, y_labelled=y_l,
                                   k=self._n_queries)
            self._n_queries += 1
            items = self._items(rows)
        if reset:
            self.store.set_pending(items, self._round)
        else:
            self.store.add_pending(items, self._round)

    def _ahead_mode(self) -> str:
        """How the next pick is made ahead: ``"store"`` (it is the same whatever the person
        answers to the images pending or reopened now: DropQuery, and ``auto`` while it
        runs DropQuery even if every one of them gets a label), ``"skip"`` (``auto`` may
        switch to margin sampling with those labels: a DropQuery made now would likely be
        thrown away, and the margin pick after the submit is quick) or ``"compute"``
        (computed and kept by the strategy; the pick after the submit uses it when the
        answers did not change it)."""
        from .. import strategies

        fn = self.loop.query_function()
        if fn is strategies.dropquery_sampling:
            return "store"
        if fn is not strategies.auto_sampling:
            return "compute"
        switch = strategies.lowbudget.AUTO_K_PER_CLASS * len(self.classes)
        n = len(self.store.labelled())
        if n + len(self.store.pending()) + len(self.store.reopened()) < switch:
            return "store"
        return "skip" if n < switch else "compute"

    def pick_ahead(self, *, scores=None, round=None, reset=False) -> bool:
        """Pick the next batches ahead, outside the session lock, and store them (pending).

        The labelling server calls this as soon as a batch is served (also while a refit
        runs), and once a refit (or the preparation) has ended, so that the batch after
        the person's submit is ready when it is asked for: the request after Enter then
        only hands it out (no pick in the request, no wait for the refit) instead of a
        DropQuery pick over the pool (seconds at 10,000 images, more beside a refit on a
        loaded machine). The picks themselves are unchanged: the current model's, among
        the images not answered nor pending, with the query number and seed the pick
        after the submit would have.

        When the pick does not depend on the answers to come (DropQuery, and ``auto``
        while it runs DropQuery even if every image pending gets a label), it is stored
        as the next batch (pending, held by no client), and then the batch after it, up
        to :data:`AHEAD` batches: a pick that outlasts one batch of answers is still
        ready in time. A batch is stored only when the session has not moved on
        meanwhile (another model installed, another query made, one of its images
        taken); a refit that ends later replaces the stored batches with its new model's
        pick (images a client holds or a person picked are never replaced). ``auto``
        about to switch to margin sampling picks nothing ahead (the margin pick after
        the submit is quick; a DropQuery now would be thrown away). Otherwise (``auto``
        past its switch) the pick is only computed and kept by the strategy: the pick
        after the submit looks at the new answers. Only strategies that keep their picks
        for the same model, rows, size and seed are run ahead (DropQuery and ``auto``);
        for others this does nothing.

        While the pool is still being encoded (``streaming``) one batch is stored, picked
        among the images encoded so far: the images encoded later do not change it (the
        batch after it is picked over every image encoded by then).

        Parameters
        ----------
        scores : PoolScores, optional
            Pick with these scores (a refit's new model before it is installed, with
            ``round``): computed only (kept by the strategy), never stored; default: the
            current model's.
        round : int, optional
            The round of ``scores``.
        reset : bool, default=False
            As the refit's pick (the unheld, unpicked pending images are replaced). With
            ``scores``, the pick is made again (up to three times) when a batch was handed
            out or answers came while it was computed: the refit's pick, made under the
            session's lock right after, then finds it and holds the lock for no query.

        Returns
        -------
        ran : bool
            Whether a pick was computed or stored (or found computed or stored).
        """
        if not self.ready or self.loop.scorer is not None \
                or not _keeps_picks(self.loop.query_function()):
            return False
        with self._lock:
            fresh = scores is not None
            mode = None if fresh else self._ahead_mode()
            if mode == "skip" and not self.streaming:
                return False
            # stored: while encoding, and picks that ignore the answers to come (up to
            # AHEAD batches); else computed only (kept by the strategy)
            stored = not fresh and (self.streaming or mode == "store")
            ahead = AHEAD if mode == "store" and not self.streaming else 1
            if stored and self._n_unleased() >= ahead * self.batch_size:
                return True  # the next batches are stored already
            remaining, n, rows_l, y_l, _ = self._query_args(reset)
            scores = self._scores if scores is None else scores
            rnd, k = (round, 0) if fresh else (self._round, self._n_queries)
        if n == 0 or scores is None:
            return False
        for _ in range(3):
            rows = self.loop.query(rnd, n, remaining, scores=scores, X_pool=self._paths,
                                   labelled=rows_l, y_labelled=y_l, k=k)
            if not fresh:
                break
            with self._lock:  # a refit's pick: again if a batch was handed out meanwhile,
                now = self._query_args(reset)  # so that the refit's own pick is this one
            if now[1:4] == (n, rows_l, y_l) and np.array_equal(now[0], remaining):
                break
            remaining, n, rows_l, y_l, _ = now
        if stored:  # and the batch after it, up to `ahead` batches
            done = self._store_ahead(rows, rnd, k, ahead)
            if done and ahead > 1:
                self.pick_ahead()
            return done
        if not fresh and not reset:
            self._picked = (scores, rnd, k, remaining.tobytes(), n)
        return True

    def picked_ahead(self) -> bool:
        """Whether the next batch is stored, or its pick computed (asking for it is instant).

        Returns
        -------
        picked : bool
            Pending images are held by no client, or the current model, the images left
            and the query number are those of the last pick made ahead.
        """
        with self._lock:
            if self.has_unleased():
                return True
            remaining, n, _, _, _ = self._query_args()
            return getattr(self, "_picked", None) is not None and self._picked[0] is \
                self._scores and self._picked[1:] == (self._round, self._n_queries,
                                                      remaining.tobytes(), n)

    def _n_unleased(self) -> int:
        return sum(p["client"] is None for p in self.store.pending())

    def _store_ahead(self, rows, rnd, k, ahead=1) -> bool:
        """Store a pick made ahead (pool ``rows`` of query ``k`` of round ``rnd``) as the
        next batch, unless the session moved on meanwhile (then nothing), or ``ahead``
        batches are stored already."""
        with self._lock:
            taken = {r["image_id"] for r in self.store.in_force()} | {
                p["image_id"] for p in self.store.pending()} | {
                r["image_id"] for r in self.store.reopened()}
            if (self._round, self._n_queries) != (rnd, k) \
                    or self._n_unleased() >= ahead * self.batch_size \
                    or taken & {int(self._ids[r]) for r in rows}:
                return False
            self._n_queries += 1
            self.store.add_pending(self._items(rows), rnd)
            return True

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
            items = items + [dict(r, reopened=True) for r in self.store.reopened(client)]
            picks = self.store.picks(it["image_id"] for it in items)
        out = []
        for it in items:
            pick = picks.get(it["image_id"])
            if pick is None and it.get("reopened"):  # the person's own answer, restored
                pick = {"label": it["label"] if it["kind"] == "label" else None}
            p = it["probability"]
            out.append({"image_id": it["image_id"], "path": self._paths[self._row[it["image_id"]]],
                        "suggestion": it["suggestion"], "probability": p, "round": it["round"],
                        "picked": pick is not None,
                        "pick": None if pick is None else pick["label"],
                        "preselect": p is not None and p >= self.preselect_threshold,
                        "reopened": bool(it.get("reopened"))})
        return out

    def holds(self, client) -> bool:
        """Whether ``client`` holds pending or reopened images (its batch is not done).

        Parameters
        ----------
        client : str
            A browser tab.

        Returns
        -------
        holds : bool
        """
        return any(p["client"] == client for p in self.store.pending()) or bool(
            self.store.reopened(client))

    def has_unleased(self) -> bool:
        """Whether pending images are picked and held by no client (a next batch is ready).

        Returns
        -------
        ready : bool
        """
        return any(p["client"] is None for p in self.store.pending())

    def release(self, client=None):
        """Give ``client``'s unanswered pending images back (a later refit may replace them).

        Parameters
        ----------
        client : str, optional
            A browser tab; None: every client (a restarted server: the tabs are gone).
            Picks stay stored.
        """
        if client is None:
            self.store.release_all()
        else:
            self.store.release(client)

    def leave(self, client):
        """A tab went away (closed, reloaded): its batch, with its picks, goes to the next
        tab that asks, before any other batch.

        Parameters
        ----------
        client : str
            The browser tab.
        """
        self.store.release_all(client)

    def image_path(self, image_id) -> str | None:
        """The file of an image of the project, None for an unknown id."""
        if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
            return None
        row = self._row.get(int(image_id))
        return None if row is None else self._paths[row]

    @property
    def n_images(self) -> int:
        """The number of images of the project."""
        return len(self._ids)

    def has_labels(self) -> bool:
        """Whether any label is in force."""
        return bool(self.store.labelled())

    def pick(self, image_id, label, *, client=None) -> int:
        """Store a person's pick for an image on screen (committed when this returns).

        A pick is not a label yet: :meth:`answer` (the page's submit) turns the picks
        into labels; :meth:`undo` cancels the latest pick first. Picks survive a restart.

        Parameters
        ----------
        image_id : int
            An image of the pending batch or a reopened one.
        label : str or None
            One of ``classes``; None is "not sure".
        client : str, optional
            Who picks (a browser tab).

        Returns
        -------
        pick_id : int
            The stored pick.

        Raises
        ------
        KeyError
            An unknown image id.
        ValueError
            A label outside the class list, or an image that is not on screen (answered
            already, or not in the pending batch).
        """
        return self.pick_many([(image_id, label)], client=client)[0]

    def pick_many(self, picks, *, client=None) -> list[int]:
        """Store several picks in one transaction, in order (committed when this returns).

        What :meth:`pick` does for one pick. Every pick is checked before anything is
        written: one bad pick writes none.

        Parameters
        ----------
        picks : list of (image_id, label or None) or (image_id, label or None, seq)
            Oldest first. ``seq`` (int) is the client's own count of its picks (the page
            sends each pick in its own request, side by side): a pick is not stored when
            the client's pick of the same image with a ``seq`` as large or larger is.
        client : str, optional
            Who picks (a browser tab).

        Returns
        -------
        pick_ids : list of int or None
            The stored picks, in the order of ``picks``; None for a pick not stored (a
            later pick of the image came first).

        Raises
        ------
        KeyError
            An unknown image id.
        ValueError
            A label outside the class list, or an image that is not on screen.
        """
        checked = []
        shown = {p["image_id"] for p in self.store.pending()} | {
            r["image_id"] for r in self.store.reopened()}
        for image_id, label, *seq in picks:
            image_id = self._check_image(image_id)
            if label is not None and label not in self.classes:
                raise ValueError(f"label {label!r} is not one of the classes {self.classes}")
            if image_id not in shown:
                raise ValueError(f"image {image_id} is not in the pending batch (answered "
                                 "already?): reload the batch")
            checked.append((image_id, label, *seq))
        return self.store.add_picks(checked, client=client)

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

    def undo(self, *, client=None, annotator=None, seq=None):
        """Undo the person's last action.

        The latest pick on the images on screen (``client``'s pending and reopened
        images) is cancelled first: the image's earlier pick, if any, is in force again.
        Only when no image on screen has a pick, the latest answer in force (of
        ``client`` when given) is cancelled by a new history row, and its image is
        reopened with that answer as its pick: it is shown with the batch and labelled
        again by the next submit (then a refit follows). The pending batch is never
        grown, reordered or hidden.

        Parameters
        ----------
        client : str, optional
            Whose action (None: anyone's).
        annotator : str, optional
            Stored on an undo row (default: the session's ``annotator``).
        seq : int, optional
            The undo's place in ``client``'s count of picks (see :meth:`pick_many`): the
            client's picks from ``seq`` on came after the undo, which leaves them alone.

        Returns
        -------
        undone : dict or None
            ``action`` (``"pick"`` or ``"answer"``), ``image_id``, ``label`` (None for
            "not sure"), ``kind`` (``"label"`` or ``"skip"``), ``pick`` (the pick now in
            force for the image, or None) and ``refit`` (whether the labels in force
            changed, so that a refit follows the next submit). None: nothing to undo.
        """
        with self._lock:
            undone = self.undo_pick(client=client, seq=seq)
            if undone is not None:
                return undone
            row = self.store.undo_last(client=client, annotator=annotator or self.annotator)
            if row is None:
                return None
            return {"action": "answer", "image_id": row["image_id"], "label": row["label"],
                    "kind": row["kind"], "pick": row["label"], "refit": row["kind"] == "label",
                    "round": row["round"]}

    def undo_pick(self, *, client=None, seq=None):
        """Undo the latest pick on the images on screen only (the store alone: no model).

        The first step of :meth:`undo`; it works while a restarted session's model is
        still loading.

        Parameters
        ----------
        client : str, optional
            Whose pending and reopened images (None: anyone's).
        seq : int, optional
            As for :meth:`undo`.

        Returns
        -------
        undone : dict or None
            As :meth:`undo` gives for a pick (``action`` ``"pick"``); None when no image
            on screen has a pick.
        """
        with self._lock:
            pending = self.store.pending()
            shown = [p["image_id"] for p in pending if client is None or p["client"] == client]
            shown += [r["image_id"] for r in self.store.reopened(client)]
            row = self.store.undo_last_pick(shown, client=client, before=seq)
            if row is None:
                return None
            now = self.store.picks([row["image_id"]]).get(row["image_id"])
            return {"action": "pick", "image_id": row["image_id"], "label": row["label"],
                    "kind": "label" if row["label"] is not None else "skip",
                    "pick": None if now is None else now["label"], "refit": False}
