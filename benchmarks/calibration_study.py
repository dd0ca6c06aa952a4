"""Does the calibration loss make entropy sampling better? Settings side by side.

For each setting, the protocol of ``benchmarks/protocol.py`` (Fashion-MNIST, a pool of
``--pool-size`` and ``--test-size`` test images, offline backbone ``effnet-lite0-minilm``,
prompt tuning with the estimator's defaults, 10 rounds of 10 labels, seeds 0 1 2) runs
``entropy`` and ``calibrated-entropy`` (the same query seeds, so the two are paired), and
prints per setting: AULC, final accuracy, ECE and error-detection AUROC of both, the
paired AULC difference, and a diagnosis of the calibration term from the training
history of the calibrated model of every round: the training accuracy of its last epoch
and the share of epochs whose calibration term was exactly 0 (``"balanced"`` weighs the
correct group by the share of wrong samples: on an all-correct batch the whole term is
0).

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/calibration_study.py

A setting is a name and a JSON object with ``calibration``, ``calibration_weight`` and
``estimator_params`` (``--setting NAME JSON``, repeatable; default: the list below).
``--logit-scale S`` replaces the offline backbone's logit scale (20) in this process: a
probe of how over-confident the plain model is to begin with (CLIP's own is 100), not an
estimator parameter; give it its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from skpeal.experiment import ExperimentConfig, load_data, run_experiment
from skpeal.experiment.runner import make_loop
from skpeal.metrics import area_under_learning_curve

AUTHORS_AUGMENT = {"augment": True, "augment_scale": [0.08, 1.0], "augment_views": 10}
SETTINGS = {
    "balanced": {},
    "sum": {"calibration": "sum"},
    "balanced, no warm-up": {"estimator_params": {"calibration_warmup": None}},
    "balanced, weight 5": {"calibration_weight": 5.0},
    "balanced + augment": {"estimator_params": AUTHORS_AUGMENT},
    "sum + augment": {"calibration": "sum", "estimator_params": AUTHORS_AUGMENT},
}


def _config(setting, args):
    est = {**setting.get("estimator_params", {})}
    if "augment_scale" in est:
        est["augment_scale"] = tuple(est["augment_scale"])
    return ExperimentConfig(
        data="fashion-mnist", model="effnet-lite0-minilm", adapter="prompt",
        strategies=["entropy", "calibrated-entropy"], rounds=args.rounds, seeds=args.seeds,
        pool_size=args.pool_size, test_size=args.test_size,
        calibration=setting.get("calibration", "balanced"),
        calibration_weight=setting.get("calibration_weight", 1.0), estimator_params=est)


def _diagnose(config, data, out, overlap):
    """Last-epoch training accuracy, share of zero-calibration epochs, calibration/CE.

    With ``overlap``, also the plain model on the same labels, every round: the share of
    the PCB candidate set (top ``gamma`` of the unlabelled pool by entropy) the two
    models have in common, and the Spearman correlation of their pool entropies.
    """
    from scipy.stats import spearmanr

    from skpeal.strategies import entropy_scores

    acc, zero, ratio, common, rho = [], [], [], [], []
    for seed in config.seeds:
        state = json.loads((out / "state" / f"calibrated-entropy__seed{seed}.json").read_text())
        loop = make_loop(config, data, "calibrated-entropy", seed)
        plain = make_loop(config, data, "entropy", seed)
        labelled = np.zeros(0, dtype=np.int64)
        for rec in state["rounds"][:-1]:  # the models that picked rounds 1 and later
            labelled = np.concatenate([labelled, np.asarray(rec["selected"], dtype=np.int64)])
            rows = np.sort(labelled)
            model = loop.fit(rec["round"] + 1, data.X_train[rows], data.y_train[rows])
            hist = model.history_
            acc.append(hist[-1]["train_accuracy"])
            zero.append(np.mean([h["calibration"] == 0.0 for h in hist]))
            ratio.append(np.mean([h["calibration_weight"] * h["calibration"] / h["ce"]
                                  for h in hist if h["ce"] > 0]))
            if overlap:
                other = plain.fit(rec["round"] + 1, data.X_train[rows], data.y_train[rows])
                rest = np.setdiff1d(np.arange(len(data.y_train)), rows)
                h_cal = entropy_scores(model.predict_proba(data.X_train[rest]))
                h_plain = entropy_scores(other.predict_proba(data.X_train[rest]))
                k = int(np.ceil(config.gamma * len(rest)))
                top = set(np.argsort(-h_cal)[:k]) & set(np.argsort(-h_plain)[:k])
                common.append(len(top) / k)
                rho.append(spearmanr(h_cal, h_plain).statistic)
    out = [float(np.mean(acc)), float(np.mean(zero)), float(np.mean(ratio))]
    if overlap:
        out += [float(np.mean(common)), float(np.mean(rho))]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/calibration_study")
    ap.add_argument("--setting", nargs=2, action="append", metavar=("NAME", "JSON"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pool-size", type=int, default=2000)
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--no-diagnosis", action="store_true")
    ap.add_argument("--overlap", action="store_true",
                    help="also compare the plain model's pool entropies (slower)")
    ap.add_argument("--logit-scale", type=float, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.logit_scale is not None:  # before any backbone is built in this process
        from skpeal.backbones import offline

        offline._LOGIT_SCALE = float(args.logit_scale)
    settings = ({n: json.loads(j) for n, j in args.setting} if args.setting else SETTINGS)
    print("| setting | AULC entropy | AULC calibrated | paired gain | final acc entropy | "
          "final acc calibrated | ECE entropy | ECE calibrated | AUROC entropy | "
          "AUROC calibrated | last-epoch train acc | zero-term epochs | cal/CE |"
          + (" candidate overlap | entropy Spearman |" if args.overlap else ""))
    print("|---" * (15 if args.overlap else 13) + "|")
    data = None
    for name, setting in settings.items():
        config = _config(setting, args)
        data = data or load_data(config)
        out = Path(args.out) / "".join(c if c.isalnum() else "_" for c in name)
        t0 = time.perf_counter()
        df = run_experiment(config, out, progress=False, data=data)
        elapsed = time.perf_counter() - t0
        per = {}
        for s in ("entropy", "calibrated-entropy"):
            rows = []
            for _, g in df[df.strategy == s].groupby("seed"):
                g = g.sort_values("round")
                rows.append((area_under_learning_curve(g.n_labels.to_numpy(),
                                                       g.accuracy.to_numpy()),
                             g.accuracy.iloc[-1], g.ece.iloc[-1], g.error_auroc.iloc[-1]))
            per[s] = np.array(rows)
        gain = per["calibrated-entropy"][:, 0] - per["entropy"][:, 0]
        diag = ("-", "-", "-") if args.no_diagnosis else (
            "{:.3f}".format, "{:.2f}".format, "{:.3f}".format, "{:.2f}".format,
            "{:.3f}".format)
        if not args.no_diagnosis:
            values = _diagnose(config, data, out, args.overlap)
            diag = tuple(f(v) for f, v in zip(diag, values))

        def ms(a):
            return f"{a.mean():.3f} ± {a.std():.3f}"

        e, c = per["entropy"], per["calibrated-entropy"]
        print(f"| {name} | {ms(e[:, 0])} | {ms(c[:, 0])} | {gain.mean():+.3f} "
              f"({(gain > 0).sum()}/{len(gain)} seeds) | {ms(e[:, 1])} | {ms(c[:, 1])} | "
              f"{ms(e[:, 2])} | {ms(c[:, 2])} | {ms(e[:, 3])} | {ms(c[:, 3])} | "
              f"{' | '.join(diag)} |", flush=True)
        print(f"<!-- {name}: {elapsed:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
