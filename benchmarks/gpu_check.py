"""Measure skpeal's GPU path: pool scoring against a bare forward, training steps, memory.

The measuring half of ``benchmarks/gpu_check.sh`` (issue 25); run it through that script.
On a CUDA device it builds open_clip ``ViT-B-32`` with ``pretrained=None`` (random
weights, the real compute) at 224 px and prints one table:

* pool scoring, images/s: ``predict_proba`` of a prompt and of a LoRA model (LoRA on both
  towers, merged for inference) against a bare ``encode_image`` forward of the same
  backbone over the same uint8 images, with the same autocast dtype and batch size; the
  bare forward also preprocesses (the same code), so the ratio is skpeal's overhead. The
  prompt model's features go through the feature cache: the cache is emptied before
  every timed pass, so each pass encodes every image (the first round of active
  learning), and hashing the images for the cache keys (timed apart, one row) is part
  of it; a row without the cache shows the difference. Goal: skpeal >= 70 % of the
  bare forward.
* one training step (ms) of prompt, LoRA and prompt+LoRA: a fit on one batch of labelled
  images for several epochs (one step each), the median epoch time after the first.
* peak GPU memory (``torch.cuda.max_memory_allocated``) of each part.

``--cpu`` runs the same parts on the CPU with the tiny test backbone and small sizes (a
dry run: under a minute); there the memory column is empty.

Writes ``gpu_check.md`` (the table and the machine) and ``gpu_check.json`` into
``--out``; the exit status is 1 when a part failed (its row then says why), else 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

GOAL = 0.70  # skpeal's pool scoring vs the bare forward


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true",
                   help="dry run on the CPU: tiny model, small sizes (defaults below change)")
    p.add_argument("--model", default=None, help="ViT-B-32 (GPU) / skpeal-tiny (--cpu)")
    p.add_argument("--pool", type=int, default=None, help="images scored: 8192 / 64")
    p.add_argument("--batch-size", type=int, default=None,
                   help="inference batch: 256 (skpeal's 'auto' on CUDA) / 16")
    p.add_argument("--n-ctx", type=int, default=None, help="prompt context tokens: 16 / 4")
    p.add_argument("--train-batch", type=int, default=32, help="images per training step")
    p.add_argument("--steps", type=int, default=None, help="timed training steps: 10 / 3")
    p.add_argument("--repeats", type=int, default=None, help="timed scoring passes: 3 / 2")
    p.add_argument("--precision", default="auto", help="skpeal's precision parameter")
    p.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_check"))
    a = p.parse_args(argv)
    gpu = not a.cpu
    a.model = a.model or ("ViT-B-32" if gpu else "skpeal-tiny")
    a.pool = a.pool or (8192 if gpu else 64)
    a.batch_size = a.batch_size or (256 if gpu else 16)
    a.n_ctx = a.n_ctx or (16 if gpu else 4)
    a.steps = a.steps or (10 if gpu else 3)
    a.repeats = a.repeats or (3 if gpu else 2)
    return a


def _versions(device) -> dict:
    import open_clip
    import peft
    import sklearn

    import skpeal

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "open_clip": open_clip.__version__,
        "peft": peft.__version__,
        "scikit-learn": sklearn.__version__,
        "skpeal": skpeal.__version__,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    bf16=torch.cuda.is_bf16_supported())
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["driver"] = f"unknown ({exc.__class__.__name__})"
    return info


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device):
    if device.type != "cuda":
        return None
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _best_time(fn, device, repeats) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def _pool(n, size, seed=0) -> np.ndarray:
    """``n`` random RGB uint8 images of ``size`` px, (n, size, size, 3)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g).numpy()


def _estimator(args, device, **kw):
    from skpeal import CLIPAdapterClassifier

    base = dict(model=args.model, pretrained=None, classes=list(range(10)),
                classnames=[f"class {i}" for i in range(10)], device=str(device),
                precision=args.precision, n_ctx=args.n_ctx,
                predict_batch_size=args.batch_size, random_state=0)
    base.update(kw)
    return CLIPAdapterClassifier(**base)


class _Table:
    def __init__(self):
        self.rows, self.failed = [], False

    def add(self, part, value, ratio="", goal="", met="", peak=None, detail=""):
        self.rows.append(dict(part=part, value=value, ratio=ratio, goal=goal, met=met,
                              peak_mib=None if peak is None else round(peak), detail=detail))
        print(f"  {part}: {value} {ratio} {detail}", flush=True)

    def error(self, part, exc):
        self.failed = True
        msg = f"{exc.__class__.__name__}: {exc}".replace("|", "/").replace("\n", " ")[:300]
        self.add(part, "FAILED", detail=msg)
        traceback.print_exc()

    def markdown(self) -> str:
        lines = ["| part | measured | vs bare forward | goal | met | peak GPU memory (MiB) "
                 "| detail |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:,}"
            lines.append(f"| {r['part']} | {r['value']} | {r['ratio']} | {r['goal']} "
                         f"| {r['met']} | {peak} | {r['detail']} |")
        return "\n".join(lines)


def _bare(args, device, dtype, table, X, detail):
    """images/s of the bare forward (preprocessing + ``encode_image``), or None."""
    from skpeal._runtime import autocast
    from skpeal.backbones import load_backbone
    from skpeal.images import Preprocessor, check_images, iter_batches

    n, bs = len(X), args.batch_size
    backbone = load_backbone(args.model, None)  # a private copy, the same weights
    model = backbone.model.to(device).eval()
    pre = Preprocessor(backbone.image_size, backbone.mean, backbone.std,
                       backbone.interpolation, backbone.resize_mode)
    source = check_images(X)

    @torch.no_grad()
    def bare_pass():
        with autocast(device, dtype):
            for chunk in iter_batches(n, bs):
                model.encode_image(source.batch(chunk, pre, device=device))

    _reset_peak(device)
    rate = n / _best_time(bare_pass, device, args.repeats)
    table.add("scoring: bare encode_image (preprocessing + forward)", f"{rate:,.0f} img/s",
              peak=_peak_mib(device), detail=detail)
    staged = source.batch(np.arange(min(bs, n)), pre, device=device)

    @torch.no_grad()
    def compute_only():
        with autocast(device, dtype):
            for chunk in iter_batches(n, bs):
                model.encode_image(staged[: len(chunk)])

    t = _best_time(compute_only, device, args.repeats)
    table.add("scoring: bare encode_image, input already on the device", f"{n / t:,.0f} img/s",
              detail="the model's compute alone (one staged batch)")
    return rate


def _scoring(args, device, dtype, table, X):
    """Pool scoring: the bare forward, then predict_proba of a prompt and a LoRA model."""
    from skpeal.features import get_feature_cache

    n, bs = len(X), args.batch_size
    detail = f"{n} images of {X.shape[1]} px, batch {bs}, autocast {dtype or 'none (fp32)'}"
    bare = None
    try:
        bare = _bare(args, device, dtype, table, X, detail)
    except Exception as exc:  # noqa: BLE001 - the other parts still run
        table.error("scoring: bare encode_image", exc)
    cache = get_feature_cache()
    labelled, y = X[: args.train_batch], np.arange(args.train_batch) % 10
    for name, kw in (("prompt", dict(adapter="prompt")),
                     ("prompt, feature_cache=False", dict(adapter="prompt", feature_cache=False)),
                     ("LoRA (both towers, merged)", dict(adapter="lora", lora_towers="both"))):
        part = f"scoring: predict_proba, {name}"
        try:
            clf = _estimator(args, device, max_epochs=1, **kw).fit(labelled, y)

            def score(clf=clf):
                cache.clear()  # every pass encodes every image (the first AL round)
                clf.predict_proba(X)

            _reset_peak(device)
            t = _best_time(score, device, args.repeats)
            rate = n / t
            ratio = rate / bare if bare else None
            table.add(part, f"{rate:,.0f} img/s",
                      ratio="-" if ratio is None else f"{100 * ratio:.0f} %",
                      goal=f">= {100 * GOAL:.0f} %",
                      met="-" if ratio is None else ("yes" if ratio >= GOAL else "NO"),
                      peak=_peak_mib(device), detail=detail)
            del clf
        except Exception as exc:  # noqa: BLE001
            table.error(part, exc)
    cache.clear()
    try:  # what the prompt model's pass pays on the CPU for its cache keys
        from skpeal.images import check_images

        t = _best_time(lambda: check_images(X).fingerprints(), torch.device("cpu"), 1)
        table.add("scoring: pool fingerprints alone (feature-cache keys, CPU)",
                  f"{n / t:,.0f} img/s", detail="part of the prompt pass with the cache")
    except Exception as exc:  # noqa: BLE001
        table.error("scoring: pool fingerprints", exc)


def _training(args, device, table, X):
    """One training step of each adapter: the median epoch of one batch, after the first."""
    y = np.arange(args.train_batch) % 10
    labelled = X[: args.train_batch]
    for adapter in ("prompt", "lora", "prompt+lora"):
        part = f"training step: {adapter}"
        try:
            clf = _estimator(args, device, adapter=adapter, max_epochs=args.steps + 1,
                             batch_size=args.train_batch, warmup_epochs=0)
            clf.fit(labelled, y)  # warm-up fit: kernels, backbone, feature cache
            _reset_peak(device)
            clf.fit(labelled, y)
            times = [h["time"] for h in clf.history_[1:]]
            ms = 1000 * statistics.median(times)
            frozen = "image features cached" if clf.model_.vision_frozen else \
                "image tower forward + backward"
            table.add(part, f"{ms:,.1f} ms", peak=_peak_mib(device),
                      detail=f"batch {args.train_batch}, median of {len(times)} steps; "
                             f"{frozen}; {clf.n_trainable_params_:,} trainable params")
            del clf
        except Exception as exc:  # noqa: BLE001
            table.error(part, exc)


def main(argv=None) -> int:
    args = _args(argv)
    from skpeal._runtime import autocast_dtype, resolve_device

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device here: run with --cpu for the dry run", file=sys.stderr)
        return 2
    device = resolve_device("cpu" if args.cpu else "cuda")
    dtype = autocast_dtype(device, args.precision)
    info = _versions(device)
    info.update(model=f"{args.model} (pretrained=None: random weights)",
                precision=f"{args.precision} -> {dtype or 'fp32'}")
    print("machine:", json.dumps(info), flush=True)
    from skpeal.backbones import load_backbone

    size = load_backbone(args.model, None, shared=True).image_size
    X = _pool(args.pool, size)
    table = _Table()
    _scoring(args, device, dtype, table, X)
    _training(args, device, table, X)
    md = table.markdown()
    head = ", ".join(f"{k} {v}" for k, v in info.items())
    print("\n" + head + "\n\n" + md, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text(head + "\n\n" + md + "\n")
    (out / "gpu_check.json").write_text(json.dumps(dict(machine=info, rows=table.rows,
                                                        args=vars(args)), indent=1))
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
