"""Inference of :class:`skpeal.nn.AdaptedCLIP`: logits and features in one streamed pass."""

from __future__ import annotations

import torch

from .._runtime import autocast, to_device
from ..features.encoder import ImageEncoder
from ..images import ImageSource

__all__ = ["predict_logits"]


@torch.no_grad()
def predict_logits(module, source: ImageSource, encoder: ImageEncoder, *, return_features=True):
    """Logits and normalised image features of every image, in one pass (CPU, float32).

    The class text features are computed once; LoRA weights are merged into the base
    layers for the pass (and restored exactly afterwards). Images are streamed: besides
    the returned arrays, memory holds a few batches. With ``return_features=False`` the
    features are not kept (None is returned in their place).
    """
    module.freeze_eval()
    device = encoder.device
    logits, feats = [], []
    with module.merged():
        with autocast(device, encoder.dtype):
            text = module.text_features().float()
        for f in encoder.iter_features(source):
            logits.append(module.logits(to_device(f, device), text).float().cpu())
            if return_features:
                feats.append(f)
    return torch.cat(logits), (torch.cat(feats) if return_features else None)
