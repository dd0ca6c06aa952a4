"""The paper's protocol on the offline backbone, for prompt tuning, LoRA and both together.

Fashion-MNIST (a seeded, class-stratified pool of ``--pool-size`` training images and
``--test-size`` test images), the offline backbone ``effnet-lite0-minilm`` (an
EfficientNet-Lite0 ImageNet classifier with a MiniLM text tower aligned to its class
names: not a CLIP model), 10 rounds of budget = number of classes (10), seeds 0 1 2,
strategies random, entropy, calibrated-entropy, margin, BADGE, coreset, featdist and the
linear probe. One ``skpeal run`` per adapter (each resumable: a killed run continues),
then one table (AULC, final accuracy, ECE and error-detection AUROC, mean ± std over
seeds; the mean query time) and one figure of the learning curves::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/protocol.py \
        --png docs/_static/protocol_learning_curves.png

The prompt adapter runs with the estimator's defaults; LoRA and prompt+LoRA with
``--optimizer adamw`` (SGD moves LoRA's zero-initialised adapters too little in 10
epochs; see the "prompt or LoRA" guide).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from skpeal import cli
from skpeal.experiment import write_report

STRATEGIES = ["random", "entropy", "calibrated-entropy", "margin", "badge", "coreset",
              "featdist", "linear-probe"]
ADAPTERS = {"prompt": [], "lora": ["--optimizer", "adamw"],
            "prompt+lora": ["--optimizer", "adamw"]}


def run_args(adapter, args):
    """The ``skpeal run`` arguments of one adapter."""
    return ["run", "--data", "fashion-mnist", "--model", "effnet-lite0-minilm",
            "--adapter", adapter, "--strategies", *STRATEGIES, "--rounds", str(args.rounds),
            "--seeds", *map(str, args.seeds), "--pool-size", str(args.pool_size),
            "--test-size", str(args.test_size), "--out", str(_out(args, adapter)), "--quiet",
            *ADAPTERS[adapter]]


def _out(args, adapter):
    return Path(args.out) / adapter.replace("+", "_")


def _table(summaries):
    lines = ["| adapter | strategy | AULC | final accuracy | final ECE | final error AUROC "
             "| query (s) |", "|---|---|---|---|---|---|---|"]
    for adapter, s in summaries.items():
        for r in s.itertuples():
            query = "-" if np.isnan(r.query_s_mean) else f"{r.query_s_mean:.2f}"
            lines.append(
                f"| {adapter} | {r.strategy} | {r.aulc_mean:.3f} ± {r.aulc_std:.3f} | "
                f"{r.final_accuracy_mean:.3f} ± {r.final_accuracy_std:.3f} | "
                f"{r.final_ece_mean:.3f} ± {r.final_ece_std:.3f} | "
                f"{r.final_error_auroc_mean:.3f} ± {r.final_error_auroc_std:.3f} | {query} |")
    return "\n".join(lines)


def _plot(results, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.3), dpi=110,
                             sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (adapter, df) in zip(axes, results.items()):
        for s in STRATEGIES:
            g = df[df.strategy == s].groupby("n_labels").accuracy
            if not len(g):
                continue
            mean, std = g.mean(), g.std(ddof=0).fillna(0.0)
            style = "-" if s in ("entropy", "calibrated-entropy") else "--"
            ax.plot(mean.index, mean.values, style, marker="o", ms=2.5, lw=1.2, label=s)
            ax.fill_between(mean.index, mean - std, mean + std, alpha=0.12)
        ax.set_title(f"{adapter}", fontsize=10)
        ax.set_xlabel("number of labelled images")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Fashion-MNIST, offline backbone effnet-lite0-minilm (not CLIP); pool "
                 f"{args.pool_size}, test {args.test_size}; mean ± std over "
                 f"{len(args.seeds)} seeds", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/protocol", help="one run folder per adapter here")
    ap.add_argument("--adapters", nargs="+", default=list(ADAPTERS), choices=list(ADAPTERS))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pool-size", type=int, default=2000)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--png", default="runs/protocol/learning_curves.png")
    ap.add_argument("--report-only", action="store_true",
                    help="tables and figure of the runs on disk, without running")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
          f"cores, {platform.python_version()}", flush=True)
    summaries, results = {}, {}
    for adapter in args.adapters:
        if not args.report_only:
            run = run_args(adapter, args)
            print("$ skpeal " + " ".join(run), flush=True)
            t0 = time.perf_counter()
            if cli.main(run) != 0:
                raise SystemExit(f"skpeal run failed for {adapter}")
            print(f"{adapter}: {time.perf_counter() - t0:.0f} s", flush=True)
        out = _out(args, adapter)
        results[adapter] = write_report(out)
        import pandas as pd

        summaries[adapter] = pd.read_csv(out / "summary.csv")
    table = _table(summaries)
    print(table)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "protocol.md").write_text(table + "\n")
    (Path(args.out) / "protocol.json").write_text(json.dumps(
        {a: s.to_dict(orient="records") for a, s in summaries.items()}, indent=1))
    _plot(results, args.png, args)
    print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
