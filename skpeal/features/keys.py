"""Cache keys of image features: the producer's space, and augmented views' keys.

A feature row is stored under a *space* (what produced it: backbone, weights,
preprocessing, device type, precision) and an *item* key (the image's fingerprint, see
:mod:`skpeal.images.fingerprints`; an augmented view adds its index). Changing any input
of the features changes a key, so a stale entry can never be returned.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from torch import nn

from ..images import Preprocessor, file_key

__all__ = ["PIPELINE_VERSION", "feature_space", "module_digest", "view_keys", "view_seeds"]

#: Identifies the input pipeline and the view recipe; part of every cache space and view key.
PIPELINE_VERSION = "skpeal-features-1"
_VIEW_RECIPE = b"view-1|rrc(ratio 3/4-4/3, bilinear)+hflip(0.5)|"


def view_keys(fingerprints, views, scale=(0.5, 1.0)) -> list[bytes]:
    """Cache keys of the augmented views ``views[i]`` of images with ``fingerprints[i]``.

    ``scale`` is the crops' area range; views of another range are other features.
    """
    recipe = _VIEW_RECIPE + f"area {float(scale[0])!r}-{float(scale[1])!r}|".encode()
    return [
        hashlib.blake2b(recipe + fp + int(v).to_bytes(4, "little"), digest_size=16).digest()
        for fp, v in zip(fingerprints, views)
    ]


def view_seeds(keys) -> np.ndarray:
    """Generator seeds of augmented views, from their keys (63-bit integers)."""
    return np.array([int.from_bytes(k[:8], "little") >> 1 for k in keys], dtype=np.int64)


def feature_space(module, preprocess: Preprocessor, *, model, pretrained, device, dtype):
    """The cache space of ``module``'s image features: backbone, weights, preprocessing.

    Memoised on the module (its frozen image tower does not change).
    """
    memo = module.__dict__.setdefault("_skpeal_feature_spaces", {})
    key = (str(device), str(dtype), preprocess.signature)
    if key not in memo:
        clip = module.clip
        tower = getattr(clip, "visual", None)
        tower = tower if isinstance(tower, torch.nn.Module) else clip
        memo[key] = (
            PIPELINE_VERSION,
            _value_key(model),
            _value_key(pretrained),
            module_digest(tower),
            preprocess.signature,
            torch.device(device).type,
            str(dtype),
        )
    return memo[key]


def _value_key(value) -> str:
    if isinstance(value, (str, os.PathLike)):
        return repr(file_key(value))
    return repr(value)


def module_digest(module: nn.Module) -> str:
    """Digest of a module's structure, parameters and buffers (names, dtypes, shapes, bytes).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    digest : str
        Hex BLAKE2b digest; equal for two modules only if their layer structure
        (``repr``) and every tensor are equal.
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{type(module).__module__}.{type(module).__qualname__}\n".encode())
    h.update(repr(module).encode())
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=False).items():
            t = t.detach()
            h.update(f"\n{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            if t.device.type != "cpu":
                t = t.cpu()
            t = t.contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(memoryview(t.numpy()).cast("B"))
    return h.hexdigest()
