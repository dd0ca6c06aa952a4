"""The few places where distributed scoring reaches into skpeal's estimator internals.

Everything else in :mod:`skpeal.distributed` uses the public API (pickling, ``predict_proba``,
``predict_proba_embed``, ``embed``, the strategies). What is here has to follow the
estimator's private layout and is kept together so that it is easy to port.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def is_skpeal(est) -> bool:
    """Whether ``est`` is a fitted :class:`skpeal.CLIPAdapterClassifier`."""
    from ..estimator import CLIPAdapterClassifier

    return isinstance(est, CLIPAdapterClassifier) and getattr(est, "model_", None) is not None


def inference_batch_size(est, default: int = 256) -> int:
    """Rows per inference batch of ``est`` (blocks are cut at multiples of it)."""
    if not is_skpeal(est):
        return default
    from .._encoding import auto_batch_size

    bs = est._fit_params["predict_batch_size"]
    if bs == "auto":
        bs = auto_batch_size(est.device_, est._preprocess.image_size)
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
    from .._encoding import autocast_dtype, feature_space

    p = est._fit_params
    dtype = autocast_dtype(est.device_, p["precision"])
    space = feature_space(est.model_, est._preprocess, model=p["model"],
                          pretrained=p["pretrained"], device=est.device_, dtype=dtype)
    return hashlib.blake2b(repr(space).encode(), digest_size=12).hexdigest()


def proba_from_features(est, features: np.ndarray) -> np.ndarray:
    """Class probabilities from image features: softmax(logit scale x image @ text).

    The same computation as ``est.predict_proba`` after its image encoder, float32 logits
    and a float64 softmax; agrees with it to float32 rounding.
    """
    from .._encoding import autocast, autocast_dtype, to_device

    module = est.model_
    device = est.device_
    dtype = autocast_dtype(device, est._fit_params["precision"])
    module.freeze_eval()
    with torch.no_grad(), module.merged():
        with autocast(device, dtype):
            text = module.text_features().float()
        f = torch.as_tensor(np.asarray(features, dtype=np.float32))
        logits = module.logits(to_device(f, device), text).float().cpu()
    return torch.softmax(logits.double(), dim=1).numpy()


def move_to_device(est, device) -> None:
    """Put a fitted (unpickled) estimator's model on ``device`` (an actor's GPU)."""
    if not is_skpeal(est):
        return
    dev = torch.device(device)
    est.model_.to(dev)
    est.device_ = dev
    est._fit_params = {**est._fit_params, "device": dev}


def prepare(est, device, num_workers) -> None:
    """Ready an unpickled estimator inside an actor: its device and decoding workers."""
    if device is not None:
        move_to_device(est, device)
    if is_skpeal(est) and num_workers is not None:
        est._fit_params = {**est._fit_params, "num_workers": int(num_workers)}
