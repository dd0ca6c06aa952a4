"""Benchmark: how long a person waits between submitting a batch and seeing the next one.

A :class:`skpeal.labeling.LabelingSession` over ``--pool`` Fashion-MNIST images written as
PNG files, ``--rounds`` rounds of ``--budget`` labels given by a simulated oracle (the
hidden labels), on the offline backbone ``effnet-lite0-minilm`` (prompt adapter, the
``skpeal label`` defaults: n_ctx 4, AdamW, lr 0.01, 10 epochs). The wait of a round is
what the person waits for: :meth:`~LabelingSession.refit` (train a fresh adapter on
every label, rescore the pool, query the next batch) plus ``next_batch``. The initial
encoding of the pool is timed apart. Beside each round: the test accuracy of its model
(``--test`` test images, not part of the wait) and the model's own estimate.

Variants (each a fresh session over the same images; the process-wide feature cache
already holds the pool's features):

* ``batch 32``: the estimator's training batch (``train_batch="estimator"``; steps per
  epoch grow with the labels);
* ``one step/epoch``: the session's default ``train_batch="labels"``, a training batch as
  large as the labels (one step per epoch), so a round's training cost does not grow
  with the labels;
* ``reference``: the structure of reference implementations, every round re-encodes the
  pool (``feature_cache=False``: no cached image features anywhere), for
  ``--reference-rounds`` rounds only (each costs a full pass over the pool).

Usage::

    python benchmarks/bench_label_wait.py                    # pool 10,000, 10 rounds of 10
    python benchmarks/bench_label_wait.py --pool 1000 --test 200 --rounds 3 \\
        --reference-rounds 1                                 # a quick run

Needs the ``offline`` extra and the Debian package ``dataset-fashion-mnist``. Prints the
machine, the CPU share other processes used while it ran, and one table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skpeal import CLIPAdapterClassifier  # noqa: E402
from skpeal import strategies as st  # noqa: E402
from skpeal.datasets import load_fashion_mnist  # noqa: E402
from skpeal.labeling import LabelingSession  # noqa: E402


def _cpu_total():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class OtherCPU:
    """Share of the machine's CPU used by other processes while the block ran."""

    def __enter__(self):
        self.busy0, self.total0 = _cpu_total()
        self.me0 = time.process_time()
        return self

    def __exit__(self, *exc):
        busy1, total1 = _cpu_total()
        ticks = os.sysconf("SC_CLK_TCK")
        mine = (time.process_time() - self.me0) * ticks
        self.share = max(0.0, (busy1 - self.busy0 - mine) / max(1, total1 - self.total0))


def write_pngs(folder, images):
    paths = []
    for i, img in enumerate(images):
        p = Path(folder) / f"{i // 1000:02d}" / f"img{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        paths.append(os.path.realpath(p))
    return paths


def estimator(args, **kw):
    return CLIPAdapterClassifier(model=args.model, pretrained=None, n_ctx=4, optimizer="adamw",
                                 lr=0.01, max_epochs=10, **kw)


def run_session(args, project, folder, truth, data, train_batch):
    s = LabelingSession(project, images=folder, classes=list(data.classnames),
                        estimator=estimator(args, batch_size=32),
                        batch_size=args.budget, train_batch=train_batch)
    t0 = time.perf_counter()
    s.prepare()
    first = s.next_batch()
    t_init = time.perf_counter() - t0
    print(f"  [{project.name}] first batch after {t_init:.1f} s", file=sys.stderr, flush=True)
    rows = []
    batch = first
    for _ in range(args.rounds):
        s.answer([(b["image_id"], truth[b["path"]]) for b in batch])
        t0 = time.perf_counter()
        info = s.refit()
        batch = s.next_batch()
        wait = time.perf_counter() - t0
        acc = float(np.mean(s.model.predict(data.X_test) == np.asarray(data.classnames)[
            data.y_test]))
        rows.append(dict(round=info["round"], n_labels=info["n_labels"], wait=wait,
                         fit=info["fit_seconds"], accuracy=acc,
                         estimated=info["estimated_accuracy"],
                         labels=dict(s.store.labelled())))
        print(f"  [{project.name}] round {info['round']}: wait {wait:.2f} s, "
              f"accuracy {acc:.3f}", file=sys.stderr, flush=True)
    s.close()
    return t_init, rows


def run_reference(args, paths, ids_to_path, data, rows):
    """Each round: fit on the same labels, re-encode and score the whole pool, query."""
    out = []
    query = st.class_balanced(st.entropy_sampling, 0.1)
    for r in rows[: args.reference_rounds]:
        labels = r["labels"]
        t0 = time.perf_counter()
        est = estimator(args, feature_cache=False, classes=list(data.classnames),
                        random_state=r["round"])
        est.fit([ids_to_path[i] for i in labels], list(labels.values()))
        unlabelled = [p for i, p in ids_to_path.items() if i not in labels]
        query(est, unlabelled, args.budget, random_state=0,
              y_labeled=np.array(list(labels.values()), dtype=object))
        out.append(dict(round=r["round"], n_labels=len(labels),
                        wait=time.perf_counter() - t0))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=10000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--budget", type=int, default=10)
    p.add_argument("--reference-rounds", type=int, default=2)
    p.add_argument("--model", default="effnet-lite0-minilm")
    p.add_argument("--skip", nargs="*", default=[], choices=["batch32", "labels"],
                   help="session variants not to run")
    args = p.parse_args(argv)

    data = load_fashion_mnist(n_train=args.pool, n_test=args.test, random_state=0)
    names = np.asarray(data.classnames)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads, no GPU used; model {args.model} (prompt "
          f"adapter); pool {args.pool} Fashion-MNIST PNGs, test {args.test}, "
          f"{args.rounds} rounds x {args.budget} labels")
    with tempfile.TemporaryDirectory() as tmp, OtherCPU() as other:
        folder = Path(tmp) / "images"
        paths = write_pngs(folder, data.X_train)
        truth = {pth: str(names[y]) for pth, y in zip(paths, data.y_train)}
        results = {}
        for name, train_batch in (("batch 32", "estimator"),
                                  ("one step/epoch (session default)", "labels")):
            if ("batch32" if train_batch == "estimator" else "labels") in args.skip:
                continue
            results[name] = run_session(args, Path(tmp) / f"session-{train_batch}", folder,
                                        truth, data, train_batch)
        first = next(iter(results))
        s = LabelingSession(next(Path(tmp).glob("session-*")))
        ids_to_path = dict(s.store.images())
        s.close()
        ref = run_reference(args, paths, ids_to_path, data, results[first][1]) \
            if args.reference_rounds else []

    print(f"other processes used {100 * other.share:.0f}% of the machine's CPU meanwhile\n")
    for name, (t_init, rows) in results.items():
        waits = np.array([r["wait"] for r in rows])
        print(f"## {name}: first batch after {t_init:.1f} s (pool encoding + zero-shot); "
              f"wait per round median {np.median(waits):.2f} s, max {waits.max():.2f} s")
        print("| round | labels | wait (s) | of it fit (s) | test accuracy | estimated |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['round']} | {r['n_labels']} | {r['wait']:.2f} | {r['fit']:.2f} | "
                  f"{r['accuracy']:.3f} | {r['estimated']:.3f} |")
        print()
    if ref:
        waits = np.array([r["wait"] for r in ref])
        print(f"## reference (pool re-encoded every round, feature_cache=False): wait per "
              f"round median {np.median(waits):.2f} s, max {waits.max():.2f} s")
        print("| round | labels | wait (s) |")
        print("|---|---|---|")
        for r in ref:
            print(f"| {r['round']} | {r['n_labels']} | {r['wait']:.2f} |")


if __name__ == "__main__":
    main()
