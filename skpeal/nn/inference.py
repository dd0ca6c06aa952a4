"""Inference of :class:`skpeal.nn.AdaptedCLIP`: logits and features in one streamed pass."""

from __future__ import annotations

import itertools

import torch

from .._runtime import autocast, to_device
from ..features.encoder import ImageEncoder
from ..images import ImageSource

__all__ = ["clear_text_cache", "predict_logits"]

_CACHE = "_skpeal_text_cache"  # (key, class text features) kept on the module


def _at_rest(module, device, dtype):
    """What the class text features depend on: every parameter and buffer (its storage and
    in-place version: training steps, ``load_adapter`` and a LoRA merge and restore all
    change it), the device and the autocast dtype."""
    return (tuple((t.data_ptr(), t._version, t.device.type)
                  for t in itertools.chain(module.parameters(), module.buffers())),
            str(device), str(dtype))


def clear_text_cache(module):
    """Forget the class text features :func:`predict_logits` kept on ``module``."""
    module.__dict__.pop(_CACHE, None)


@torch.no_grad()
def predict_logits(module, source: ImageSource, encoder: ImageEncoder, *, return_features=True):
    """Logits and normalised image features of every image, in one pass (CPU, float32).

    The class text features are computed once, and kept for the next call while no
    parameter or buffer of ``module`` changes (a text tower pass per call was ~10% of
    scoring a pool in chunks); LoRA weights are merged into the base layers for the pass
    (and restored exactly afterwards). Images are streamed: besides the returned arrays,
    memory holds a few batches. With ``return_features=False`` the features are not kept
    (None is returned in their place).
    """
    module.freeze_eval()
    device = encoder.device
    logits, feats = [], []
    kept = module.__dict__.get(_CACHE)
    text = kept[1] if kept is not None and kept[0] == _at_rest(module, device,
                                                               encoder.dtype) else None
    with module.merged():
        if text is None:
            with autocast(device, encoder.dtype):
                text = module.text_features().float()
        for f in encoder.iter_features(source):
            logits.append(module.logits(to_device(f, device), text).float().cpu())
            if return_features:
                feats.append(f)
    module.__dict__[_CACHE] = (_at_rest(module, device, encoder.dtype), text)
    return torch.cat(logits), (torch.cat(feats) if return_features else None)
