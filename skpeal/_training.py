"""Training and batched inference for :class:`skpeal._model.AdaptedCLIP`."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .data import ImageSource, Preprocessor, iter_batches, random_resized_crop_flip
from .losses import _check_finite, calibration_loss, calibration_weight_at


def autocast_dtype(device: torch.device, precision: str):
    """The autocast dtype for a device and a ``precision`` setting (None: fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


@torch.no_grad()
def encode_images(module, source: ImageSource, preprocess: Preprocessor, *, device,
                  dtype, batch_size: int, indices=None) -> torch.Tensor:
    """Normalised image features of ``source`` (or of its rows ``indices``), float32 on CPU."""
    module.freeze_eval()
    idx_all = np.arange(len(source)) if indices is None else np.asarray(indices)
    out = []
    for chunk in iter_batches(len(idx_all), batch_size):
        x = _to_device(source.batch(idx_all[chunk], preprocess), device)
        with _autocast(device, dtype):
            out.append(module.image_features(x).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def predict_logits(module, source, preprocess, *, device, dtype, batch_size):
    """Logits and normalised image features of every image, in one pass (CPU, float32)."""
    module.freeze_eval()
    with _autocast(device, dtype):
        text = module.text_features().float()
    feats = encode_images(module, source, preprocess, device=device, dtype=dtype,
                          batch_size=batch_size)
    logits = module.logits(feats.to(device), text).float().cpu()
    return logits, feats


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return f


def train(module, source: ImageSource, y: np.ndarray, preprocess: Preprocessor, *, params,
          device, dtype, generator: torch.Generator, progress=None) -> list[dict]:
    """Train the adapter of ``module`` on images ``source`` with class indices ``y``.

    ``params`` is the estimator's validated parameter dict. Returns the per-epoch history.
    """
    n = len(source)
    bs = params["batch_size"]
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * params["max_epochs"]
    warmup = min(total - 1, steps_per_epoch * params["warmup_epochs"]) if total > 1 else 0
    trainable = module.adapter_parameters()
    if params["optimizer"] == "sgd":
        opt = torch.optim.SGD(trainable, lr=params["lr"], momentum=0.9,
                              weight_decay=params["weight_decay"])
    else:
        opt = torch.optim.AdamW(trainable, lr=params["lr"], weight_decay=params["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, warmup))
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    y_t = torch.as_tensor(y, dtype=torch.long)

    # A frozen image tower needs every image encoded once per fit, not once per epoch.
    cached = None
    if module.vision_frozen and not params["augment"]:
        cached = encode_images(module, source, preprocess, device=device, dtype=dtype,
                               batch_size=params["predict_batch_size"])
    fixed_text = None
    if module.text_frozen:
        with torch.no_grad(), _autocast(device, dtype):
            fixed_text = module.text_features().float()

    history = []
    module.zero_shot = False
    step = 0
    for epoch in range(params["max_epochs"]):
        t0 = time.perf_counter()
        module.adapter_train()
        order = torch.randperm(n, generator=generator).numpy()
        sums = dict(loss=0.0, ce=0.0, calibration=0.0, correct=0)
        weight = 0.0
        for chunk in iter_batches(n, bs):
            idx = order[chunk]
            target = y_t[idx].to(device)
            with _autocast(device, dtype):
                if cached is not None:
                    img = cached[torch.as_tensor(idx)].to(device)
                else:
                    x = source.batch(idx, preprocess)
                    if params["augment"]:
                        x = random_resized_crop_flip(x, generator)
                    x = _to_device(x, device)
                    if module.vision_frozen:
                        with torch.no_grad():
                            img = module.image_features(x)
                    else:
                        img = module.image_features(x)
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
            _check_finite(loss)
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
        history.append({
            "epoch": epoch + 1,
            "loss": sums["loss"] / n,
            "ce": sums["ce"] / n,
            "calibration": sums["calibration"] / n,
            "calibration_weight": weight,
            "train_accuracy": sums["correct"] / n,
            "lr": opt.param_groups[0]["lr"],
            "time": time.perf_counter() - t0,
        })
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{history[-1]['loss']:.3f}",
                                 acc=f"{history[-1]['train_accuracy']:.2f}")
    return history
