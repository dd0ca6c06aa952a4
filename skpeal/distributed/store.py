"""A feature store on shared storage: image features of a frozen tower, kept as Parquet.

The distributed form of the feature cache of :mod:`skpeal.features`. With a frozen image
tower (the prompt adapter, or LoRA on the text tower only) an image's features never change
between rounds: the cluster computes each image's features once, writes them here, and
later rounds score the pool from features instead of decoding and encoding every image
again.

Layout::

    <root>/<space>/part-<digest>.parquet     columns: key (binary), feature (list<float32>)

``<space>`` names the image tower, its weights and the preprocessing (two estimators share
features exactly when they share a space). Each part file holds the features an actor
computed for one block; its name is a digest of its keys, and it is written through
:func:`skpeal._io.atomic_path` (a temporary name, renamed; removed on failure), so a
retried block rewrites the same file and readers never see half a file.

Keys identify image content. A file path is keyed by the path as given, its size and its
modification time in nanoseconds (what a shared file system reports the same on every
node; a rewritten file gets a new key); in-memory images (arrays, PIL images) by a digest
of their pixels.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..images import check_images

__all__ = ["ParquetFeatureStore", "content_keys"]


def content_keys(X) -> list[bytes]:
    """One 16-byte key per image of ``X`` (see the module docstring).

    Parameters
    ----------
    X : sequence of paths, PIL images or arrays, or an array of images
        Images in any form :class:`skpeal.CLIPAdapterClassifier` accepts.

    Returns
    -------
    keys : list of bytes
        16 bytes per image, in the order of ``X``.
    """
    if isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype.kind in "USO"):
        items = list(X)
        if all(isinstance(x, (str, os.PathLike)) for x in items):
            return [_path_key(x) for x in items]
    return list(check_images(X).fingerprints())


def _path_key(path) -> bytes:
    p = os.fspath(path)
    try:
        st = os.stat(p)
        ident = f"file|{p}|{st.st_size}|{st.st_mtime_ns}"
    except OSError as exc:
        raise ValueError(f"cannot read image file {p!r}: {exc}") from None
    return hashlib.blake2b(ident.encode(), digest_size=16).digest()


#: Per process: ``(root, space) -> (part files read, key index)`` of
#: :meth:`ParquetFeatureStore.index`, so a long-lived actor reads each part file's keys once.
_INDEXES: dict = {}


class ParquetFeatureStore:
    """Image features of frozen towers kept as Parquet files under one folder.

    Pass it as ``feature_store=`` to :class:`skpeal.distributed.RayPoolScorer`; every
    node of the cluster must see ``root`` at the same path (shared storage), or run on one
    machine.

    Parameters
    ----------
    root : str or path-like
        Folder of the store; created when missing.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> store = ParquetFeatureStore(tempfile.mkdtemp())
    >>> store.write("space", [b"k" * 16], np.ones((1, 4), dtype=np.float32))
    1
    >>> store.n_rows("space")
    1
    """

    def __init__(self, root):
        self.root = Path(root)

    def __repr__(self):
        return f"ParquetFeatureStore({os.fspath(self.root)!r})"

    def _dir(self, space: str) -> Path:
        return self.root / space

    def files(self, space: str) -> list[Path]:
        """The part files of ``space``, sorted by name.

        Parameters
        ----------
        space : str
            The feature space (a digest of the image tower and preprocessing).

        Returns
        -------
        files : list of pathlib.Path
            Empty when nothing is stored.
        """
        d = self._dir(space)
        return sorted(d.glob("part-*.parquet")) if d.is_dir() else []

    def n_rows(self, space: str) -> int:
        """Number of stored feature rows of ``space`` (a key stored twice counts twice).

        Parameters
        ----------
        space : str
            The feature space (a digest of the image tower and preprocessing).

        Returns
        -------
        n_rows : int
            Rows over all part files (read from the Parquet footers).
        """
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files(space))

    def index(self, space: str) -> dict:
        """Where each stored key of ``space`` is.

        The first call in a process reads the key column of every part file; later calls
        (the next query of a long-lived scoring actor) read only the part files written
        since, so a later round does not reread the keys of the whole store. A part file
        that went away makes it read everything again.

        Parameters
        ----------
        space : str
            The feature space (a digest of the image tower and preprocessing).

        Returns
        -------
        index : dict
            ``key -> (file, row)``, shared by the calls of this process: read it, do not
            change it.
        """
        import pyarrow.parquet as pq

        files = self.files(space)
        cache_key = (os.path.abspath(self.root), space)
        seen, out = _INDEXES.get(cache_key, (set(), {}))
        if not seen <= set(files):  # a part file was removed: start afresh
            seen, out = set(), {}
        for f in files:
            if f in seen:
                continue
            keys = pq.read_table(f, columns=["key"]).column("key").to_pylist()
            for row, k in enumerate(keys):
                out.setdefault(k, (f, row))
            seen.add(f)
        _INDEXES[cache_key] = (seen, out)
        return out

    def read(self, space: str, keys, index: dict) -> tuple[np.ndarray, np.ndarray]:
        """Features of the stored ``keys``.

        Parameters
        ----------
        space : str
            The feature space (a digest of the image tower and preprocessing).
        keys : sequence of bytes
            Keys from :func:`content_keys`.
        index : dict
            From :meth:`index` (taken once per process; rows written later are not in it).

        Returns
        -------
        found : ndarray of shape (len(keys),), bool
            Which keys are stored.
        features : ndarray of shape (found.sum(), n_features), float32
            Their features, in the order of ``keys``.
        """
        import pyarrow.parquet as pq

        found = np.array([k in index for k in keys], dtype=bool)
        by_file: dict = {}
        for pos in np.flatnonzero(found):
            f, row = index[keys[pos]]
            by_file.setdefault(f, []).append((pos, row))
        rows = {}
        for f, items in by_file.items():
            col = pq.read_table(f, columns=["feature"]).column("feature").combine_chunks()
            width = len(col[0]) if len(col) else 0
            mat = col.values.to_numpy(zero_copy_only=False).reshape(len(col), width)
            for pos, row in items:
                rows[pos] = mat[row]
        feats = [rows[p] for p in np.flatnonzero(found)]
        width = feats[0].shape[0] if feats else 0
        return found, np.asarray(feats, dtype=np.float32).reshape(len(feats), width)

    def write(self, space: str, keys, features) -> int:
        """Store ``features[i]`` under ``keys[i]`` as one part file (atomic, idempotent).

        Parameters
        ----------
        space : str
            The feature space (a digest of the image tower and preprocessing).
        keys : sequence of bytes
            Keys from :func:`content_keys`.
        features : array-like of shape (len(keys), n_features)
            Image features (stored as float32).

        Returns
        -------
        n_rows : int
            Rows written (0 for no key).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = list(keys)
        if not keys:
            return 0
        feats = np.ascontiguousarray(features, dtype=np.float32)
        if feats.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys but {feats.shape[0]} feature rows")
        d = self._dir(space)
        d.mkdir(parents=True, exist_ok=True)
        name = hashlib.blake2b(b"".join(keys), digest_size=16).hexdigest()
        values = pa.array(feats.reshape(-1))
        col = pa.FixedSizeListArray.from_arrays(values, feats.shape[1])
        table = pa.table({"key": pa.array(keys, type=pa.binary()), "feature": col})
        with atomic_path(d / f"part-{name}.parquet") as tmp:  # no temporary file left behind
            pq.write_table(table, tmp)
        return len(keys)
