"""The training loop of :class:`skpeal.nn.AdaptedCLIP` and its learning-rate schedule.

Image features come from an ``skpeal.features.encoder.ImageEncoder``: with a frozen image
tower they are computed once (and looked up in the feature cache), never per epoch; with
a trained image tower each batch goes through the tower with gradients.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .._runtime import autocast, to_device
from .._spec import TrainSpec
from ..features.encoder import ImageEncoder
from ..images import ImageSource, Preprocessor, iter_batches
from ..losses import _check_finite, calibration_loss, calibration_weight_at
from .inference import clear_text_cache

__all__ = ["lr_schedule", "train"]


def _divergence_advice(spec: TrainSpec, dtype) -> str:
    """What to change when the loss becomes non-finite (fp32 advice only where it applies)."""
    advice = f"lower lr (now {spec.lr:g})"
    if spec.calibration is not None:
        advice += f" or calibration_weight (now {spec.calibration_weight:g})"
    if dtype is not None:  # mixed precision: fp32 is the other way out
        advice += ", or train with precision='fp32'"
    return advice


def _lr_lambda(total_steps: int, warmup_steps: int):
    # A closed form in LambdaLR rather than SequentialLR(LinearLR, CosineAnnealingLR):
    # CosineAnnealingLR computes the cosine recursively, which drifts from this closed
    # form by float rounding (and would change trained weights).
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


def lr_schedule(optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up over ``warmup_steps`` steps, then a cosine decay to 0 at ``total_steps``.

    Returns a :class:`torch.optim.lr_scheduler.LambdaLR`, stepped once per batch.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, warmup_steps))


def train(
    module,
    source: ImageSource,
    y: np.ndarray,
    preprocess: Preprocessor,
    *,
    spec: TrainSpec,
    reuse_features: bool,
    device,
    dtype,
    generator: torch.Generator,
    encoder: ImageEncoder,
    progress=None,
) -> list[dict]:
    """Train the adapter of ``module`` on images ``source`` with class indices ``y``.

    ``spec`` is the training recipe. With a frozen image tower the features come from
    ``encoder``: once per fit (and from the feature cache) without augmentation, or one
    of ``augment_views`` fixed views per image and epoch with it; with
    ``reuse_features=False`` (``feature_cache=False``) they are re-encoded every epoch
    (the reference structure, for comparison). Returns the per-epoch history.
    """
    clear_text_cache(module)  # the text features it kept change with the adapter
    n = len(source)
    bs = spec.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * spec.max_epochs
    warmup = min(total - 1, steps_per_epoch * spec.warmup_epochs) if total > 1 else 0
    trainable = module.adapter_parameters()
    if spec.optimizer == "sgd":
        opt = torch.optim.SGD(trainable, lr=spec.lr, momentum=0.9, weight_decay=spec.weight_decay)
    else:
        opt = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=spec.weight_decay)
    sched = lr_schedule(opt, total, warmup)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    y_t = torch.as_tensor(y, dtype=torch.long)
    augment = spec.augment
    n_views = spec.augment_views
    reuse = reuse_features

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
    for epoch in range(spec.max_epochs):
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
                    x = source.batch(idx, preprocess, device=device,
                                     augment=generator if augment else None,
                                     scale=spec.augment_scale)
                    img = module.image_features(to_device(x, device))
                text = fixed_text if fixed_text is not None else module.text_features()
                logits = module.logits(img.float(), text.float()).float()
            ce = F.cross_entropy(logits, target)
            loss = ce
            cal = torch.zeros(())
            if spec.calibration is not None:
                weight = calibration_weight_at(
                    (step + 1) / total, spec.calibration_weight, spec.calibration_warmup
                )
                cal = calibration_loss(logits, target, spec.calibration,
                                       beta=spec.calibration_beta)
                loss = ce + weight * cal
            _check_finite(loss, f"loss (epoch {epoch + 1}, step {step + 1})",
                          advice=_divergence_advice(spec, dtype))
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
                f"{_divergence_advice(spec, dtype)}"
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
