"""The stopping criteria's signals over the rounds of a Fashion-MNIST run, against the truth.

1. Runs (or resumes) ``skpeal run`` on Fashion-MNIST with the offline backbone
   ``effnet-lite0-minilm`` (the command is printed), one strategy, one seed.
2. The runner stores, per round, the images it picked and the test accuracy, not the
   model's predictions. This script therefore refits each round's model on the round's
   labelled set with the runner's own estimator settings and seeds (a fresh adapter every
   round, so the refit is the same model; its test accuracy is checked against the run's),
   and computes what the criteria need: the probabilities on the unlabelled pool
   (:class:`skpeal.stopping.EstimatedAccuracy`) and the predictions on a fixed stop set of
   pool images (:class:`skpeal.stopping.KappaAverage`).
3. Prints one row per round and writes the figure: the estimated pool accuracy beside the
   true pool and test accuracies, the mean kappa, and where each criterion would have
   suggested stopping.

Needs the ``offline`` and ``plot`` extras and Debian's ``dataset-fashion-mnist``. With the
defaults it costs about 12 CPU-minutes (the run, then the refits; a second call reuses the
run)::

    python benchmarks/plot_stopping.py --png docs/_static/stopping_criteria.png
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from skpeal import cli
from skpeal.experiment import ExperimentConfig, load_data
from skpeal.experiment.runner import make_loop
from skpeal.stopping import EstimatedAccuracy, KappaAverage


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/stopping", help="the run's folder (resumed)")
    ap.add_argument("--strategy", default="calibrated-entropy")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--pool-size", type=int, default=1000)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--stop-set", type=int, default=300, help="pool images in the stop set")
    ap.add_argument("--min-gain", type=float, default=0.01)
    ap.add_argument("--gain-window", type=int, default=2)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--kappa", type=float, default=0.9, help="KappaAverage threshold")
    ap.add_argument("--kappa-window", type=int, default=3)
    ap.add_argument("--png", default="runs/stopping/stopping_criteria.png")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    run_args = ["run", "--data", "fashion-mnist", "--model", "effnet-lite0-minilm",
                "--strategies", args.strategy, "--rounds", str(args.rounds),
                "--pool-size", str(args.pool_size), "--test-size", str(args.test_size),
                "--seeds", "0", "--out", args.out, "--quiet"]
    print("$ skpeal " + " ".join(run_args), flush=True)
    t0 = time.perf_counter()
    if cli.main(run_args) != 0:
        raise SystemExit("skpeal run failed")
    print(f"run: {time.perf_counter() - t0:.0f} s", flush=True)

    out = Path(args.out)
    config = ExperimentConfig(**json.loads((out / "config.json").read_text()))
    data = load_data(config)
    state = json.loads((out / "state" / f"{args.strategy}__seed0.json").read_text())
    loop = make_loop(config, data, args.strategy, 0)  # the run's own round logic
    n_pool = len(data.y_train)
    stop_set = np.sort(np.random.default_rng(2009).choice(n_pool, args.stop_set, replace=False))

    gain = EstimatedAccuracy(min_gain=args.min_gain, window=args.gain_window,
                             patience=args.patience)
    kappa = KappaAverage(threshold=args.kappa, window=args.kappa_window,
                         classes=np.arange(len(data.classnames)))
    rows = []
    labelled = np.zeros(0, dtype=np.int64)
    t0 = time.perf_counter()
    header = ("round labels test_acc refit_acc est_pool_acc true_pool_acc kappa mean_kappa "
              "gain_stop kappa_stop")
    print(header, flush=True)
    for rec in state["rounds"]:
        rnd = rec["round"]
        labelled = np.concatenate([labelled, np.asarray(rec["selected"], dtype=np.int64)])
        rows = np.sort(labelled)  # the model of round rnd + 1, as the run trained it
        est = loop.fit(rnd + 1, data.X_train[rows], data.y_train[rows])
        proba = est.predict_proba(data.X_train)
        refit_acc = float((est.predict(data.X_test) == data.y_test).mean())
        unlabelled = np.setdiff1d(np.arange(n_pool), labelled)
        g = gain.update(proba[unlabelled])
        k = kappa.update(proba[stop_set].argmax(1))
        row = {
            "round": rnd, "n_labels": len(labelled), "test_accuracy": rec["accuracy"],
            "refit_test_accuracy": refit_acc, "estimated_pool_accuracy": gain.signal,
            "true_pool_accuracy": float((proba[unlabelled].argmax(1)
                                         == data.y_train[unlabelled]).mean()),
            "kappa": kappa.kappas_[-1] if kappa.kappas_ else float("nan"),
            "mean_kappa": kappa.signal, "gain_stop": g, "kappa_stop": k,
        }
        rows.append(row)
        print(f"{rnd:5d} {row['n_labels']:6d} {row['test_accuracy']:8.3f} {refit_acc:9.3f} "
              f"{row['estimated_pool_accuracy']:12.3f} {row['true_pool_accuracy']:13.3f} "
              f"{row['kappa']:5.3f} {row['mean_kappa']:10.3f} {g!s:>9} {k!s:>10}", flush=True)
    print(f"refits: {time.perf_counter() - t0:.0f} s")
    (out / "stopping_rounds.json").write_text(json.dumps(rows, indent=1))
    for name, crit in (("EstimatedAccuracy", gain), ("KappaAverage", kappa)):
        if crit.stopped_at_ is None:
            print(f"{name}: never suggested stopping in {len(rows)} rounds")
        else:
            r = rows[crit.stopped_at_]
            print(f"{name}: would stop after round {r['round']} ({r['n_labels']} labels), "
                  f"test accuracy {r['test_accuracy']:.3f} (last round: "
                  f"{rows[-1]['test_accuracy']:.3f}, best: "
                  f"{max(x['test_accuracy'] for x in rows):.3f})")
    _plot(rows, gain, kappa, args, config, Path(args.png))
    print(f"figure: {args.png}")


def _plot(rows, gain, kappa, args, config, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([r["n_labels"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6.5), dpi=120, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 2]})
    ax1.plot(n, [r["test_accuracy"] for r in rows], "k-o", ms=3, label="test accuracy (true)")
    ax1.plot(n, [r["true_pool_accuracy"] for r in rows], "-o", ms=3, color="tab:gray",
             label="unlabelled pool accuracy (true)")
    ax1.plot(n, [r["estimated_pool_accuracy"] for r in rows], "-s", ms=3, color="tab:blue",
             label="estimated pool accuracy (mean max prob)")
    ax1.set_ylabel("accuracy")
    ax1.grid(alpha=0.3)
    ax2.plot(n, [r["kappa"] for r in rows], "-o", ms=3, color="tab:orange", alpha=0.5,
             label="kappa vs previous round")
    ax2.plot(n, [r["mean_kappa"] for r in rows], "-s", ms=3, color="tab:red",
             label=f"mean kappa, window {args.kappa_window}")
    ax2.axhline(args.kappa, color="tab:red", ls=":", lw=1, label=f"threshold {args.kappa}")
    ax2.set_ylabel("Cohen's kappa (stop set)")
    ax2.set_xlabel("number of labelled images")
    ax2.grid(alpha=0.3)
    for crit, color, name in ((gain, "tab:blue", f"EstimatedAccuracy(min_gain={args.min_gain}, "
                                                 f"window={args.gain_window}, "
                                                 f"patience={args.patience})"),
                              (kappa, "tab:red", f"KappaAverage(threshold={args.kappa}, "
                                                 f"window={args.kappa_window})")):
        if crit.stopped_at_ is not None:
            x = n[crit.stopped_at_]
            for ax in (ax1, ax2):
                ax.axvline(x, color=color, ls="--", lw=1.2)
            ax1.plot([], [], color=color, ls="--", label=f"{name} stops ({x} labels)")
        else:
            ax1.plot([], [], color=color, ls="none", label=f"{name}: no stop")
    ax1.legend(fontsize=7, loc="lower right")
    ax2.legend(fontsize=7, loc="lower right")
    ax1.set_title(f"fashion-mnist - {config.model} ({config.adapter}), {args.strategy}, "
                  f"pool {args.pool_size}, test {args.test_size}, seed 0", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
