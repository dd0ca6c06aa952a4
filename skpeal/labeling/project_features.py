"""Image features kept in the project folder, so a restarted session encodes nothing again.

With a frozen image tower (the prompt adapter, or LoRA on the text tower only, with
``feature_cache=True``) an image's features depend only on the image and the tower.
The process-wide :mod:`feature cache <skpeal.features>` keeps them for one process;
:class:`ProjectFeatures` writes them to ``<project>/features/<space>.npz`` under the same
keys (the cache *space*: backbone, weights digest, preprocessing, device type, precision;
and each image's fingerprint: real path, size, modification time, inode) and puts them
back into the cache when the project is opened again. A changed image or another backbone
gives other keys, so a stale row is never used; it only takes disk space until the
next save of that space rewrites the file without it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_path
from .._runtime import autocast_dtype
from ..features import get_feature_cache
from ..features.keys import feature_space
from ..images import check_images

__all__ = ["ProjectFeatures"]


def _space_of(est):
    """The feature-cache space of a fitted skpeal estimator (None: no frozen cached tower)."""
    spec = getattr(est, "_fit_spec", None)
    model = getattr(est, "model_", None)
    if spec is None or model is None or not getattr(model, "vision_frozen", False) \
            or not spec.runtime.feature_cache:
        return None
    rt = spec.runtime
    return feature_space(model, est._preprocess, model=spec.model, pretrained=spec.pretrained,
                         device=rt.device, dtype=autocast_dtype(rt.device, rt.precision))


def _tuples(value):
    """JSON lists back to the tuples of a cache space."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class ProjectFeatures:
    """The image features of a project's pool, on disk.

    Parameters
    ----------
    folder : path-like
        Where the files go (``<project>/features``).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._saved = {}  # file name -> rows in it

    @staticmethod
    def _name(space) -> str:
        return hashlib.blake2b(repr(space).encode(), digest_size=12).hexdigest() + ".npz"

    def load(self) -> int:
        """Put every stored row into the process-wide feature cache.

        Returns
        -------
        n_rows : int
            Rows loaded. An unreadable file is ignored (its features are encoded again).
        """
        n = 0
        if not self.folder.is_dir():
            return 0
        cache = get_feature_cache()
        for f in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(f, allow_pickle=False) as data:
                    space = _tuples(json.loads(str(data["space"])))
                    keys = [k.tobytes() for k in data["keys"]]  # uint8 rows: NULs kept
                    rows = torch.from_numpy(np.ascontiguousarray(data["rows"]))
            except (OSError, ValueError, KeyError):
                continue
            cache.put_many(space, keys, rows)
            self._saved[f.name] = len(keys)
            n += len(keys)
        return n

    def save(self, est, paths) -> int:
        """Write the cached features of ``paths`` in ``est``'s space (when there are more).

        Parameters
        ----------
        est : CLIPAdapterClassifier
            A fitted estimator whose image features are cached (others: nothing to do).
        paths : list of str
            The pool.

        Returns
        -------
        n_rows : int
            Rows in the file now (0 when nothing was written).
        """
        space = _space_of(est)
        if space is None:
            return 0
        keys = check_images(list(paths)).fingerprints()
        rows = get_feature_cache().get_many(space, keys)
        have = [k for k, r in enumerate(rows) if r is not None]
        name = self._name(space)
        if not have or len(have) <= self._saved.get(name, 0):
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / name) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, space=np.array(json.dumps(list(space))),
                         keys=np.frombuffer(b"".join(keys[k] for k in have), dtype=np.uint8)
                         .reshape(len(have), -1),
                         rows=torch.stack([rows[k] for k in have]).numpy())
            os.chmod(tmp, 0o644)
        self._saved[name] = len(have)
        return len(have)
