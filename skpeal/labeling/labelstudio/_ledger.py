"""Which Label Studio annotation gave which image its label (``<project>/labelstudio.sqlite``).

Label Studio's deletion events carry only annotation ids, and one image may sit in several
tasks: the ledger keeps, per annotation, its image, label and time, so a deleted
annotation can be taken back and the newest annotation of an image wins across tasks.
Nothing is removed: a deleted annotation is marked, not erased.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY,        -- Label Studio's annotation id
    image_id INTEGER NOT NULL,
    task_id INTEGER,
    label TEXT NOT NULL,
    updated REAL NOT NULL,         -- seconds since the epoch (updated_at, else created_at)
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS annotations_image ON annotations(image_id);
"""


class Ledger:
    """The annotations that reached a session through Label Studio's webhook."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def record(self, annotation_id, image_id, task_id, label, updated):
        """Store (or update) one annotation; return the image's newest live annotation."""
        with self._lock:
            self._db.execute(
                "INSERT INTO annotations(id, image_id, task_id, label, updated, deleted) "
                "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT(id) DO UPDATE SET image_id = "
                "excluded.image_id, task_id = excluded.task_id, label = excluded.label, "
                "updated = excluded.updated, deleted = 0",
                (annotation_id, image_id, task_id, label, updated))
            return self._newest(image_id)

    def delete(self, annotation_id):
        """Mark an annotation deleted; return ``(image_id, newest live row or None)``.

        Returns None for an annotation the ledger never saw.
        """
        with self._lock:
            row = self._db.execute("SELECT image_id FROM annotations WHERE id = ?",
                                   (annotation_id,)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE annotations SET deleted = 1 WHERE id = ?",
                             (annotation_id,))
            return row["image_id"], self._newest(row["image_id"])

    def _newest(self, image_id):
        row = self._db.execute(
            "SELECT * FROM annotations WHERE image_id = ? AND deleted = 0 "
            "ORDER BY updated DESC, id DESC LIMIT 1", (image_id,)).fetchone()
        return None if row is None else dict(row)

    def close(self):
        with self._lock:
            self._db.close()
