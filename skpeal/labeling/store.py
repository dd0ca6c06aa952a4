"""The label store: one SQLite database (WAL mode) in the project folder.

Labels are the asset of a labelling project, so they live in a real database
(:mod:`sqlite3` from the standard library) and every write is committed before the
method that made it returns: a process killed at any moment (``kill -9``) loses no label
whose call returned, and a restart finds the same pending batch.

Schema (``schema_version`` 1, file ``<project>/labels.sqlite``)
----------------------------------------------------------------

``meta(key TEXT PRIMARY KEY, value TEXT)``
    ``schema_version``, ``classes`` (JSON list of the class names, in the order the
    user gave them), ``created_at`` and free settings written by the session.
``images(id INTEGER PRIMARY KEY, path TEXT UNIQUE, added_at REAL)``
    Every image of the project, by absolute path. Images are only ever served by ``id``.
``labels(id INTEGER PRIMARY KEY AUTOINCREMENT, image_id, kind, label, undoes, annotator,
client, created_at, round, model_version, suggestion, probability)``
    The history: append-only, nothing is ever updated or deleted. ``kind`` is
    ``"label"`` (``label`` holds the class), ``"skip"`` (the person was not sure) or
    ``"undo"`` (``undoes`` holds the id of the row it cancels). ``round`` and
    ``model_version`` name the model whose suggestion (``suggestion``, ``probability``)
    was shown. The row *in force* for an image is its latest ``label``/``skip`` row that
    no ``undo`` row cancels: a correction is simply a later row, an undo brings the
    previous answer back.
``rounds(round INTEGER PRIMARY KEY, model_version, n_labels, estimated_accuracy,
fit_seconds, created_at)``
    One row per fitted model (round 0 is the zero-shot model): the learning curve.
``pending(image_id INTEGER PRIMARY KEY, position, round, suggestion, probability,
client, leased_at)``
    The batch picked by the current model and not answered yet, in query order. An item
    handed to a client (a browser tab) is leased to it (``client``, ``leased_at``) so two
    clients never receive the same image at the same time.
``picks(id INTEGER PRIMARY KEY AUTOINCREMENT, image_id, label, client, created_at, state,
seq)``
    Every keypress of a person on an image of the pending batch (or a reopened one),
    committed before the page shows it as saved. ``label`` NULL is a "not sure" pick.
    ``seq`` is the page's own count of its picks: a pick that reaches the server after a
    later pick of the same image and client (requests travel side by side) is not stored.
    ``state`` is ``"open"`` (the pick in force is the latest open row of the image),
    ``"undone"`` (cancelled by undo) or ``"submitted"`` (turned into a ``labels`` row).
``reopened(image_id INTEGER PRIMARY KEY, client, label, kind, created_at, round,
suggestion, probability)``
    Submitted answers cancelled by undo, shown again with the person's own answer
    (``label``/``kind``) until they are submitted again. They are not part of the
    pending batch, which undo never grows.

Any program may read the file while a session runs (WAL mode allows concurrent readers),
e.g. ``sqlite3 labels.sqlite "select * from labels"``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "LabelStore"]

SCHEMA_VERSION = 1
DB_NAME = "labels.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id),
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'undo')),
    label TEXT,
    undoes INTEGER REFERENCES labels(id),
    annotator TEXT,
    client TEXT,
    created_at REAL NOT NULL,
    round INTEGER,
    model_version TEXT,
    suggestion TEXT,
    probability REAL
);
CREATE INDEX IF NOT EXISTS labels_image ON labels(image_id);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    model_version TEXT NOT NULL,
    n_labels INTEGER NOT NULL,
    estimated_accuracy REAL,
    fit_seconds REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    image_id INTEGER PRIMARY KEY REFERENCES images(id),
    position INTEGER NOT NULL,
    round INTEGER NOT NULL,
    suggestion TEXT,
    probability REAL,
    client TEXT,
    leased_at REAL
);
CREATE TABLE IF NOT EXISTS picks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id),
    label TEXT,
    client TEXT,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'undone', 'submitted')),
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS picks_open ON picks(state, image_id);
CREATE INDEX IF NOT EXISTS picks_image ON picks(image_id);
CREATE TABLE IF NOT EXISTS reopened (
    image_id INTEGER PRIMARY KEY REFERENCES images(id),
    client TEXT,
    label TEXT,
    kind TEXT NOT NULL,
    created_at REAL NOT NULL,
    round INTEGER,
    suggestion TEXT,
    probability REAL
);
"""

# The latest label/skip row per image that no undo row cancels.
_IN_FORCE = """
SELECT l.* FROM labels l
JOIN (SELECT image_id, MAX(id) AS id FROM labels
      WHERE kind IN ('label', 'skip')
        AND id NOT IN (SELECT undoes FROM labels WHERE kind = 'undo')
      GROUP BY image_id) last ON l.id = last.id
"""


class LabelStore:
    """The SQLite label store of one project (see the module docstring for the schema).

    Thread-safe: one connection guarded by a lock; every public method is one
    transaction, committed before it returns.

    Parameters
    ----------
    path : str or path-like
        The database file, or a project folder (the file is then
        ``<folder>/labels.sqlite``; the folder is created).
    """

    def __init__(self, path):
        path = Path(path)
        if path.suffix != ".sqlite":
            path.mkdir(parents=True, exist_ok=True)
            path = path / DB_NAME
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(os.fspath(path), check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed transaction survives a power cut too, not only a killed process
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                self._db.execute(stmt)
        if "seq" not in {r["name"] for r in self._db.execute("PRAGMA table_info(picks)")}:
            self._db.execute("ALTER TABLE picks ADD COLUMN seq INTEGER")  # a 0.x project
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
            self.set_meta("created_at", time.time())
        elif version != SCHEMA_VERSION:
            raise ValueError(
                f"{path} has label-store schema version {version}; this skpeal reads "
                f"version {SCHEMA_VERSION}"
            )

    # ------------------------------------------------------------------ plumbing
    class _Tx:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()
            return False

    def _tx(self):
        return LabelStore._Tx(self)

    def _query(self, sql, args=()):
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self):
        """Close the connection (the data is already committed)."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ meta
    def get_meta(self, key, default=None):
        """The JSON value stored under ``key``.

        Parameters
        ----------
        key : str
            The setting's name.
        default : object, default=None
            Returned when nothing is stored under ``key``.

        Returns
        -------
        value : object
            The decoded JSON value, or ``default``.
        """
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key, value):
        """Store a JSON-serialisable ``value`` under ``key`` (committed on return).

        Parameters
        ----------
        key : str
            The setting's name.
        value : object
            Any JSON-serialisable value.
        """
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))

    # ------------------------------------------------------------------ images
    def add_images(self, paths: Iterable[str]) -> int:
        """Register image paths; already known ones keep their id.

        Parameters
        ----------
        paths : iterable of str
            Absolute paths.

        Returns
        -------
        n_new : int
            Number of images added.
        """
        now = time.time()
        with self._tx() as db:
            before = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            db.executemany("INSERT OR IGNORE INTO images(path, added_at) VALUES (?, ?)",
                           ((os.fspath(p), now) for p in paths))
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0] - before

    def images(self) -> list[tuple[int, str]]:
        """Every image of the project.

        Returns
        -------
        images : list of (int, str)
            ``(id, path)`` pairs, by id.
        """
        rows = self._query("SELECT id, path FROM images ORDER BY id")
        return [(r["id"], r["path"]) for r in rows]

    def image_path(self, image_id) -> str | None:
        """The file of one image.

        Parameters
        ----------
        image_id : int
            The image's id.

        Returns
        -------
        path : str or None
            Its path, None when there is no such image.
        """
        rows = self._query("SELECT path FROM images WHERE id = ?", (int(image_id),))
        return rows[0]["path"] if rows else None

    # ------------------------------------------------------------------ labels
    def add_answers(self, answers, *, annotator=None, client=None, round=None,
                    model_version=None) -> list[int]:
        """Append answers in one transaction; remove them from the pending batch.

        Parameters
        ----------
        answers : list of (image_id, label_or_None)
            ``None`` records a skip.
        annotator, client, round, model_version : optional
            Stored on every row.

        Returns
        -------
        row_ids : list of int
            The new history rows, in the order of ``answers``.
        """
        now = time.time()
        ids = []
        with self._tx() as db:
            for image_id, label in answers:
                sugg = db.execute("SELECT suggestion, probability FROM pending WHERE image_id = ? "
                                  "UNION ALL SELECT suggestion, probability FROM reopened "
                                  "WHERE image_id = ?", (image_id, image_id)).fetchone()
                cur = db.execute(
                    "INSERT INTO labels(image_id, kind, label, annotator, client, created_at, "
                    "round, model_version, suggestion, probability) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id, "skip" if label is None else "label", label, annotator, client,
                     now, round, model_version,
                     sugg["suggestion"] if sugg else None, sugg["probability"] if sugg else None),
                )
                ids.append(cur.lastrowid)
                db.execute("DELETE FROM pending WHERE image_id = ?", (image_id,))
                db.execute("DELETE FROM reopened WHERE image_id = ?", (image_id,))
                db.execute("UPDATE picks SET state = 'submitted' WHERE image_id = ? "
                           "AND state = 'open'", (image_id,))
        return ids

    def undo_last(self, *, client=None, annotator=None):
        """Cancel the latest label/skip row still in force and reopen its image.

        The cancellation is an ``undo`` row; the image is put in ``reopened`` with the
        cancelled answer (the person's own), never in the pending batch.

        Parameters
        ----------
        client : str, optional
            Only this client's answers are considered (None: anyone's).
        annotator : str, optional
            Stored on the ``undo`` row.

        Returns
        -------
        row : dict or None
            The cancelled row, None when there is nothing to undo.
        """
        cond, args = "", []
        if client is not None:
            cond, args = " AND l.client = ?", [client]
        with self._tx() as db:
            row = db.execute(
                f"SELECT l.* FROM ({_IN_FORCE}) l WHERE 1 = 1{cond} ORDER BY l.id DESC LIMIT 1",
                args,
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            db.execute(
                "INSERT INTO labels(image_id, kind, undoes, annotator, client, created_at, "
                "round, model_version) VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                (row["image_id"], row["id"], annotator, client, now, row["round"],
                 row["model_version"]),
            )
            db.execute(
                "INSERT OR REPLACE INTO reopened(image_id, client, label, kind, created_at, "
                "round, suggestion, probability) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row["image_id"], client, row["label"], row["kind"], now, row["round"],
                 row["suggestion"], row["probability"]),
            )
            return dict(row)

    def cancel(self, image_id, *, client, annotator=None):
        """Cancel the answer in force of ``image_id`` when ``client`` gave it (an undo row).

        Unlike :meth:`undo_last` the image does not go back to a client's batch: it is
        unlabelled again, for whoever the queue gives it to. Used when an annotation is
        deleted in Label Studio (the history keeps both rows).

        Parameters
        ----------
        image_id : int
            The image.
        client : str
            Only an answer of this client is cancelled.
        annotator : str, optional
            Stored on the ``undo`` row.

        Returns
        -------
        row : dict or None
            The cancelled row, None when the answer in force is not ``client``'s.
        """
        with self._tx() as db:
            row = db.execute(f"SELECT l.* FROM ({_IN_FORCE}) l WHERE l.image_id = ?",
                             (int(image_id),)).fetchone()
            if row is None or row["client"] != client:
                return None
            db.execute(
                "INSERT INTO labels(image_id, kind, undoes, annotator, client, created_at, "
                "round, model_version) VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                (row["image_id"], row["id"], annotator, client, time.time(), row["round"],
                 row["model_version"]),
            )
            return dict(row)

    def reopened(self, client=None) -> list[dict]:
        """The reopened answers (see :meth:`undo_last`), oldest first.

        Parameters
        ----------
        client : str, optional
            Only those reopened by this client or by nobody in particular.

        Returns
        -------
        rows : list of dict
            ``reopened`` rows.
        """
        if client is None:
            return [dict(r) for r in self._query("SELECT * FROM reopened ORDER BY created_at")]
        return [dict(r) for r in self._query(
            "SELECT * FROM reopened WHERE client IS NULL OR client = ? ORDER BY created_at",
            (client,))]

    # ------------------------------------------------------------------ picks
    def add_picks(self, picks, *, client=None) -> list[int | None]:
        """Store several picks in one transaction, in the order given (committed on return).

        Parameters
        ----------
        picks : list of (image_id, label or None) or (image_id, label or None, seq)
            The picks, oldest first (a later pick of an image is the one in force).
            ``seq`` (int or None) is the client's own count of its picks: a pick is not
            stored when ``client`` has a pick of the image with a ``seq`` as large or
            larger (it arrived after a later one).
        client : str, optional
            Who picked.

        Returns
        -------
        pick_ids : list of int or None
            The new ``picks`` rows, in the order of ``picks``; None for a pick not stored.
        """
        now, ids = time.time(), []
        with self._tx() as db:
            for image_id, label, *seq in picks:
                seq = seq[0] if seq else None
                cur = db.execute(
                    "INSERT INTO picks(image_id, label, client, created_at, seq) SELECT ?, ?, ?, "
                    "?, ? WHERE ? IS NULL OR NOT EXISTS (SELECT 1 FROM picks WHERE image_id = ? "
                    "AND client IS ? AND seq >= ?)",
                    (int(image_id), label, client, now, seq, seq, int(image_id), client, seq))
                ids.append(cur.lastrowid if cur.rowcount == 1 else None)
        return ids

    def picks(self, image_ids) -> dict[int, dict]:
        """The pick in force of each image (its latest open pick).

        Parameters
        ----------
        image_ids : iterable of int
            The images asked about.

        Returns
        -------
        picks : dict
            ``{image_id: picks row}`` for the images that have an open pick.
        """
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT p.* FROM picks p JOIN (SELECT image_id, MAX(id) AS id FROM picks "
            f"WHERE state = 'open' AND image_id IN ({marks}) GROUP BY image_id) last "
            f"ON p.id = last.id", ids)
        return {r["image_id"]: dict(r) for r in rows}

    def undo_last_pick(self, image_ids, *, client=None, before=None):
        """Cancel the latest open pick among ``image_ids``.

        Parameters
        ----------
        image_ids : iterable of int
            The images of the batch on screen.
        client : str, optional
            Whose undo (with ``before``).
        before : int, optional
            The undo's place in ``client``'s count of picks: its picks with a ``seq`` as
            large or larger came after the undo and are not cancelled.

        Returns
        -------
        row : dict or None
            The cancelled ``picks`` row, None when none of the images has an open pick.
        """
        ids = [int(i) for i in image_ids]
        if not ids:
            return None
        marks = ",".join("?" * len(ids))
        with self._tx() as db:
            row = db.execute(f"SELECT * FROM picks WHERE state = 'open' AND image_id IN "
                             f"({marks}) AND NOT (? IS NOT NULL AND client IS ? AND seq >= ?) "
                             f"ORDER BY id DESC LIMIT 1", [*ids, before, client, before]
                             ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE picks SET state = 'undone' WHERE id = ?", (row["id"],))
            return dict(row)

    def in_force(self) -> list[dict]:
        """The answer in force of every answered image.

        Returns
        -------
        rows : list of dict
            One ``labels`` row (a label or a skip) per image, by image id.
        """
        return [dict(r) for r in self._query(_IN_FORCE + " ORDER BY l.image_id")]

    def labelled(self) -> dict[int, str]:
        """The labels in force (skips excluded).

        Returns
        -------
        labels : dict
            ``{image_id: label}``.
        """
        return {r["image_id"]: r["label"] for r in self.in_force() if r["kind"] == "label"}

    def history(self) -> list[dict]:
        """Every answer, skip and undo ever written.

        Returns
        -------
        rows : list of dict
            The ``labels`` table in the order written.
        """
        return [dict(r) for r in self._query("SELECT * FROM labels ORDER BY id")]

    # ------------------------------------------------------------------ rounds
    def add_round(self, round, model_version, n_labels, estimated_accuracy, fit_seconds):
        """Record a fitted model.

        Parameters
        ----------
        round : int
            Its round (0: the zero-shot model).
        model_version : str
            Its name, e.g. ``"round-3"``.
        n_labels : int
            Labels it was trained on.
        estimated_accuracy : float or None
            Its estimate of its accuracy on the unlabelled pool.
        fit_seconds : float
            Training time.
        """
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO rounds(round, model_version, n_labels, "
                "estimated_accuracy, fit_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (round, model_version, n_labels, estimated_accuracy, fit_seconds, time.time()),
            )

    def rounds(self) -> list[dict]:
        """Every fitted model: the learning curve.

        Returns
        -------
        rounds : list of dict
            ``rounds`` rows, by round.
        """
        return [dict(r) for r in self._query("SELECT * FROM rounds ORDER BY round")]

    # ------------------------------------------------------------------ pending batch
    def pending(self) -> list[dict]:
        """The pending batch.

        Returns
        -------
        items : list of dict
            ``pending`` rows in query order.
        """
        return [dict(r) for r in self._query("SELECT * FROM pending ORDER BY position")]

    def set_pending(self, items, round, *, only=None):
        """Replace the pending items no client holds and nobody has picked a class for.

        Parameters
        ----------
        items : list of (int, str, float)
            ``(image_id, suggestion, probability)``, appended after the leased items.
        round : int
            The round of the model that picked them.
        only : list of int, optional
            Replace only those of these image ids (e.g. a batch picked ahead, unwanted).
        """
        ids = "" if only is None else f" AND image_id IN ({','.join('?' * len(only))})"
        with self._tx() as db:
            db.execute("DELETE FROM pending WHERE client IS NULL AND image_id NOT IN (SELECT "
                       "image_id FROM picks WHERE state = 'open')" + ids, list(only or ()))
            self._append_pending(db, items, round)

    def add_pending(self, items, round):
        """Append items to the pending batch.

        Parameters
        ----------
        items : list of (int, str, float)
            ``(image_id, suggestion, probability)``. An image already pending keeps its
            place; one without a suggestion (drawn before any model) gets this one.
        round : int
            The round of the model that picked them.
        """
        with self._tx() as db:
            self._append_pending(db, items, round)

    @staticmethod
    def _append_pending(db, items, round):
        last = db.execute("SELECT MAX(position) FROM pending").fetchone()[0]
        start = 0 if last is None else last + 1
        db.executemany(
            "INSERT INTO pending(image_id, position, round, suggestion, probability) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET suggestion = "
            "excluded.suggestion, probability = excluded.probability "
            "WHERE pending.suggestion IS NULL",
            ((int(i), start + k, round, s, None if p is None else float(p))
             for k, (i, s, p) in enumerate(items)),
        )

    def lease(self, client, n, *, expire_after=600.0) -> list[dict]:
        """Hand pending items to a client: its own leases first, then free ones.

        Items leased by another client less than ``expire_after`` seconds ago are never
        handed out; older leases are free again (a closed tab does not hold images forever).

        Parameters
        ----------
        client : str
            Who asks (a browser tab).
        n : int
            At most this many items.
        expire_after : float, default=600.0
            Seconds after which a lease lapses.

        Returns
        -------
        items : list of dict
            ``pending`` rows now leased to ``client``, in query order.
        """
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE pending SET client = NULL, leased_at = NULL "
                       "WHERE client IS NOT NULL AND leased_at < ?", (now - expire_after,))
            mine = db.execute("SELECT image_id FROM pending WHERE client = ? ORDER BY position",
                              (client,)).fetchall()
            need = n - len(mine)
            if need > 0:  # the batch last worked on first (a restarted server's tabs ask
                # again: the page a person was using gets its own batch back), then query order
                free = db.execute("SELECT image_id FROM pending WHERE client IS NULL "
                                  "ORDER BY leased_at IS NULL, leased_at DESC, position "
                                  "LIMIT ?", (need,)).fetchall()
                db.executemany("UPDATE pending SET client = ?, leased_at = ? WHERE image_id = ?",
                               ((client, now, r["image_id"]) for r in free))
            db.execute("UPDATE pending SET leased_at = ? WHERE client = ?", (now, client))
            rows = db.execute("SELECT * FROM pending WHERE client = ? ORDER BY position LIMIT ?",
                              (client, n)).fetchall()
            return [dict(r) for r in rows]

    def release_all(self, client=None):
        """Free the leases of a gone tab (or of every tab), keeping when each was held.

        A tab that left, or every tab of a server that restarted. :meth:`lease` hands out
        the most recently held batch first, so the next tab (or the tab a person was using
        when the server stopped) gets that batch with its picks, not one that a tab closed
        long ago held.

        Parameters
        ----------
        client : str, optional
            The tab that went away; None: every tab.
        """
        with self._tx() as db:
            if client is None:
                db.execute("UPDATE pending SET client = NULL")
            else:
                db.execute("UPDATE pending SET client = NULL WHERE client = ?", (client,))

    def release(self, client):
        """Free every item leased to one client.

        Parameters
        ----------
        client : str
            The client whose leases end.
        """
        with self._tx() as db:
            db.execute("UPDATE pending SET client = NULL, leased_at = NULL WHERE client = ?",
                       (client,))
