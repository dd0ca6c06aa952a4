"""Content fingerprints of images and files: what cache keys are made of."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from PIL import Image

__all__ = ["file_key", "item_digest", "row_digests"]


def file_key(path) -> tuple:
    """What identifies a local file's content for caching: path, size, mtime, inode.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    key : tuple
        ``(realpath, size, mtime_ns, inode, device)``, or ``(path,)`` when it is not a
        file (e.g. a tag name).
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError:
        return (p,)
    return (os.path.realpath(p), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.digest()


def _numpy_bytes(t: torch.Tensor) -> np.ndarray:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy()


def row_digests(data: torch.Tensor, chunk: int = 256) -> list[bytes]:
    """16-byte digest of each row (image) of a stacked tensor: pixel bytes, dtype, shape."""
    head = f"array|{data.dtype}|{tuple(data.shape[1:])}|".encode()
    out = []
    for start in range(0, data.shape[0], chunk):
        block = data[start : start + chunk]
        rows = _numpy_bytes(block).reshape(block.shape[0], -1)
        out.extend(_digest(head, memoryview(r)) for r in rows)
    return out


def item_digest(item) -> bytes:
    """16-byte digest of one image item: a PIL image, an array, or a file path."""
    if isinstance(item, Image.Image):
        return _digest(f"pil|{item.mode}|{item.size}|".encode(), item.tobytes())
    if isinstance(item, np.ndarray):
        a = np.ascontiguousarray(item)
        return _digest(f"ndarray|{a.dtype.str}|{a.shape}|".encode(), memoryview(a).cast("B"))
    return _digest(f"file|{file_key(item)!r}".encode())
