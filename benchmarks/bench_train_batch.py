"""Benchmark: does one training step per epoch (batch = all labels) keep accuracy?

With a frozen image tower and cached image features a training step's cost is the text
tower's forward and backward, whatever the batch; the estimator's default batch of 32
makes the steps per round, and so the wait, grow with the labels. This compares the
default (batch 32) with a batch as large as the labels (one step per epoch) on
Fashion-MNIST, ``--sizes`` labelled images drawn stratified by class, ``--seeds`` draws,
the offline backbone ``effnet-lite0-minilm`` (prompt adapter, the ``skpeal label``
settings: n_ctx 4, AdamW, lr 0.01, 10 epochs), ``--test`` test images.

Usage::

    python benchmarks/bench_train_batch.py            # 10, 20, 50, 100 labels x 3 seeds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skpeal import CLIPAdapterClassifier  # noqa: E402
from skpeal.datasets import load_fashion_mnist  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 100])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--model", default="effnet-lite0-minilm")
    args = p.parse_args(argv)
    test = load_fashion_mnist(n_train=10, n_test=args.test, random_state=0)
    print(f"model {args.model} (prompt adapter, n_ctx 4, AdamW, lr 0.01, 10 epochs); "
          f"Fashion-MNIST, {args.test} test images; {os.cpu_count()} cores")
    print("| labels | seed | acc batch 32 | fit (s) | acc batch = labels | fit (s) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for n in args.sizes:
        for seed in range(args.seeds):
            data = load_fashion_mnist(n_train=n, n_test=10, random_state=100 + seed)
            row = []
            for bs in (32, n):
                clf = CLIPAdapterClassifier(model=args.model, pretrained=None, n_ctx=4,
                                            optimizer="adamw", lr=0.01, max_epochs=10,
                                            batch_size=bs, random_state=seed,
                                            classes=list(range(10)),
                                            classnames=list(test.classnames))
                t0 = time.perf_counter()
                clf.fit(data.X_train, data.y_train)
                fit = time.perf_counter() - t0
                acc = float(np.mean(clf.predict(test.X_test) == test.y_test))
                row += [acc, fit]
                summary.setdefault((n, bs == 32), []).append(acc)
            print(f"| {n} | {seed} | {row[0]:.3f} | {row[1]:.2f} | {row[2]:.3f} | {row[3]:.2f} |",
                  flush=True)
    print("\n| labels | mean acc batch 32 | mean acc batch = labels |\n|---|---|---|")
    for n in args.sizes:
        print(f"| {n} | {np.mean(summary[(n, True)]):.3f} | {np.mean(summary[(n, False)]):.3f} |")


if __name__ == "__main__":
    main()
