"""Training and batched inference for :class:`skpeal._model.AdaptedCLIP`.

Image features come from an :class:`skpeal._encoding.ImageEncoder`: with a frozen image
tower they are computed once (and looked up in the feature cache), never per epoch; with
a trained image tower each batch goes through the tower with gradients.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ._encoding import ImageEncoder, autocast, autocast_dtype, to_device
from .data import ImageSource, Preprocessor, iter_batches, random_resized_crop_flip
from .losses import _check_finite, calibration_loss, calibration_weight_at

__all__ = ["autocast_dtype", "predict_logits", "train"]


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


def _divergence_advice(params, dtype) -> str:
    """What to change when the loss becomes non-finite (fp32 advice only where it applies)."""
    advice = f"lower lr (now {params['lr']:g})"
    if params["calibration"] is not None:
        advice += f" or calibration_weight (now {params['calibration_weight']:g})"
    if dtype is not None:  # mixed precision: fp32 is the other way out
        advice += ", or train with precision='fp32'"
    return advice


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


def train(
    module,
    source: ImageSource,
    y: np.ndarray,
    preprocess: Preprocessor,
    *,
    params,
    device,
    dtype,
    generator: torch.Generator,
    encoder: ImageEncoder,
    progress=None,
) -> list[dict]:
    """Train the adapter of ``module`` on images ``source`` with class indices ``y``.

    ``params`` is the estimator's validated parameter dict. With a frozen image tower the
    features come from ``encoder``: once per fit (and from the feature cache) without
    augmentation, or one of ``augment_views`` fixed views per image and epoch with it;
    with ``feature_cache=False`` they are re-encoded every epoch (the reference
    structure, for comparison). Returns the per-epoch history.
    """
    n = len(source)
    bs = params["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * params["max_epochs"]
    warmup = min(total - 1, steps_per_epoch * params["warmup_epochs"]) if total > 1 else 0
    trainable = module.adapter_parameters()
    if params["optimizer"] == "sgd":
        opt = torch.optim.SGD(
            trainable, lr=params["lr"], momentum=0.9, weight_decay=params["weight_decay"]
        )
    else:
        opt = torch.optim.AdamW(trainable, lr=params["lr"], weight_decay=params["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, warmup))
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    y_t = torch.as_tensor(y, dtype=torch.long)
    augment = params["augment"]
    n_views = params.get("augment_views", 1)
    reuse = params.get("feature_cache", True)

    # A frozen image tower: features are computed outside the training steps.
    fixed = None
    if module.vision_frozen and not augment and reuse:
        fixed = encoder.features(source)
    fixed_text = None
    if module.text_frozen:
        with torch.no_grad(), autocast(device, dtype):
            fixed_text = module.text_features().float()

    history = []
    module.zero_shot = False
    step = 0
    for epoch in range(params["max_epochs"]):
        t0 = time.perf_counter()
        feats = fixed
        if module.vision_frozen and feats is None:
            views = None
            if augment:
                views = torch.randint(n_views, (n,), generator=generator).numpy()
            feats = encoder.features(source, views=views)
        module.adapter_train()
        order = torch.randperm(n, generator=generator).numpy()
        sums = dict(loss=0.0, ce=0.0, calibration=0.0, correct=0)
        weight = 0.0
        for chunk in iter_batches(n, bs):
            idx = order[chunk]
            target = y_t[idx].to(device)
            with autocast(device, dtype):
                if feats is not None:
                    img = to_device(feats[torch.as_tensor(idx)], device)
                else:
                    x = source.batch(idx, preprocess, device=device)
                    if augment:
                        x = random_resized_crop_flip(x, generator)
                    img = module.image_features(to_device(x, device))
                text = fixed_text if fixed_text is not None else module.text_features()
                logits = module.logits(img.float(), text.float()).float()
            ce = F.cross_entropy(logits, target)
            loss = ce
            cal = torch.zeros(())
            if params["calibration"] is not None:
                weight = calibration_weight_at(
                    (step + 1) / total, params["calibration_weight"], params["calibration_warmup"]
                )
                cal = calibration_loss(logits, target, params["calibration"])
                loss = ce + weight * cal
            _check_finite(loss, f"loss (epoch {epoch + 1}, step {step + 1})",
                          advice=_divergence_advice(params, dtype))
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            step += 1
            b = len(idx)
            sums["loss"] += float(loss.detach()) * b
            sums["ce"] += float(ce.detach()) * b
            sums["calibration"] += float(cal.detach()) * b
            sums["correct"] += int((logits.detach().argmax(1) == target).sum())
        module.freeze_eval()
        if not all(bool(torch.isfinite(p).all()) for p in trainable):
            raise FloatingPointError(
                f"the adapter weights became non-finite in epoch {epoch + 1}; "
                f"{_divergence_advice(params, dtype)}"
            )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": sums["loss"] / n,
                "ce": sums["ce"] / n,
                "calibration": sums["calibration"] / n,
                "calibration_weight": weight,
                "train_accuracy": sums["correct"] / n,
                "lr": opt.param_groups[0]["lr"],
                "time": time.perf_counter() - t0,
            }
        )
        if progress is not None:
            progress.update(1)
            progress.set_postfix(
                loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['train_accuracy']:.2f}"
            )
    return history
