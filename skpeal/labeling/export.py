"""The exports of a labelling session: CSV, class folders (Label Studio: labelstudio.py).

Every function takes the :class:`~skpeal.labeling.LabelingSession` first and reads it
through its store and image list; the session's ``export_*`` methods call them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from .._io import atomic_path, atomic_write_text
from ._checks import check_out_parent
from ._project import round_adapter_path

__all__ = ["export_csv", "export_folder", "folder_name"]


def folder_name(label: str) -> str:
    """The folder a class is exported to: ``label`` with ``/ \\ : * ? " < > |`` and control
    characters replaced by ``_`` (``"T-shirt/top"`` -> ``"T-shirt_top"``)."""
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", label).strip()
    return "_" if name in ("", ".", "..") else name


def _export_rows(session, history):
    rows = session.store.history() if history else session.store.in_force()
    out = []
    for r in rows:
        if not history and r["kind"] != "label":
            continue
        path = session.image_path(r["image_id"]) or ""
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


def export_csv(session, path=None, *, history=False):
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
    rows = _export_rows(session, history)
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

def export_folder(session, out) -> int:
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
    folders = {c: folder_name(c) for c in session.classes}
    if len(set(folders.values())) != len(folders):
        folders = {c: f"{folder_name(c)}-{k}" for k, c in enumerate(session.classes)}
    n = 0
    used = set()
    for image_id, label in sorted(session.store.labelled().items()):
        label = folders[label]
        src = Path(session.image_path(image_id))
        name = src.name
        if (label, name) in used:
            name = f"{src.stem}-{image_id}{src.suffix}"
        used.add((label, name))
        (out / label).mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out / label / name)
        n += 1
    return n


def export_adapter(session, path) -> int:
    """Save the session's current adapter, else the last round's as saved (no training).

    Parameters
    ----------
    session : LabelingSession
        The session.
    path : str or path-like
        The safetensors file to write.

    Returns
    -------
    round : int
        The round of the exported adapter.
    """
    if session.model is not None:
        session.model.save_adapter(path)
        return session.round
    saved = {r["round"]: round_adapter_path(session.project, r["round"])
             for r in session.store.rounds()}
    rounds = [r for r, p in saved.items() if p.exists()]
    if not rounds:
        raise RuntimeError(f"{session.project} has no model yet: start labelling (skpeal "
                           "label) or call prepare() first")
    with atomic_path(path) as tmp:
        shutil.copyfile(saved[rounds[-1]], tmp)
    return rounds[-1]
