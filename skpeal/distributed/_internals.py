"""The few places where distributed scoring reaches into skpeal's estimator internals.

Everything else in :mod:`skpeal.distributed` uses the public API (pickling, ``predict_proba``,
``predict_proba_embed``, ``embed``, the strategies). What is here follows the estimator's
private layout (its :class:`~skpeal._spec.FitSpec`, ``model_``, ``_preprocess``) and is
kept together so that it is easy to port.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

from .._runtime import auto_batch_size, autocast, autocast_dtype, to_device
from ..estimator import CLIPAdapterClassifier
from ..features.keys import feature_space


def is_skpeal(est) -> bool:
    """Whether ``est`` is a fitted :class:`skpeal.CLIPAdapterClassifier`."""
    return isinstance(est, CLIPAdapterClassifier) and getattr(est, "model_", None) is not None


def inference_batch_size(est, default: int = 256) -> int:
    """Rows per inference batch of ``est`` (blocks are cut at multiples of it)."""
    if not is_skpeal(est):
        return default
    rt = est._fit_spec.runtime
    bs = rt.predict_batch_size
    if bs == "auto":
        bs = auto_batch_size(rt.device, est._preprocess.image_size)
    return int(bs)


def image_tower_frozen(est) -> bool:
    """Whether ``est``'s image features do not depend on its adapter (frozen tower)."""
    return is_skpeal(est) and bool(est.model_.vision_frozen)


def feature_space_id(est) -> str:
    """A short digest naming the space of ``est``'s frozen image features.

    Equal for two estimators exactly when their image towers, weights and preprocessing are
    equal (so their features are interchangeable); the device type and precision are part
    of it, as they are for the in-process cache.
    """
    spec = est._fit_spec
    rt = spec.runtime
    dtype = autocast_dtype(rt.device, rt.precision)
    space = feature_space(est.model_, est._preprocess, model=spec.model,
                          pretrained=spec.pretrained, device=rt.device, dtype=dtype)
    return hashlib.blake2b(repr(space).encode(), digest_size=12).hexdigest()


def proba_from_features(est, features: np.ndarray) -> np.ndarray:
    """Class probabilities from image features: softmax(logit scale x image @ text).

    The same computation as ``est.predict_proba`` after its image encoder, float32 logits
    and a float64 softmax; agrees with it to float32 rounding.
    """
    module = est.model_
    rt = est._fit_spec.runtime
    dtype = autocast_dtype(rt.device, rt.precision)
    module.freeze_eval()
    with torch.no_grad(), module.merged():
        with autocast(rt.device, dtype):
            text = module.text_features().float()
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
        logits = module.logits(to_device(f, rt.device), text).float().cpu()
    return torch.softmax(logits.double(), dim=1).numpy()


def prepare(est, device, num_workers) -> None:
    """Ready an unpickled estimator inside an actor: its device and decoding workers."""
    if not is_skpeal(est):
        return
    spec = est._fit_spec
    if device is not None:
        dev = torch.device(device)
        est.model_.to(dev)
        est.device_ = dev
        spec = spec.on_device(dev)
    if num_workers is not None:
        spec = dataclasses.replace(
            spec, runtime=dataclasses.replace(spec.runtime, num_workers=int(num_workers))
        )
    est._fit_spec = spec
