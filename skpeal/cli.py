"""The ``skpeal`` command line: ``demo``, ``run`` and ``report`` (thin over experiment.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["main"]

#: The demo: shipped data (Fashion-MNIST) and the offline backbone, a few minutes on 2 cores.
DEMO = dict(
    data="fashion-mnist",
    model="effnet-lite0-minilm",
    adapter="prompt",
    strategies=["random", "entropy", "calibrated-entropy", "linear-probe"],
    rounds=6,
    budget=10,
    seeds=[0, 1],
    pool_size=1000,
    test_size=500,
    estimator_params=dict(max_epochs=10, n_ctx=4, optimizer="adamw", lr=0.01),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skpeal",
        description="Calibrated, parameter-efficient active learning with CLIP models.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the built-in demo (shipped data, offline backbone)")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--overwrite", action="store_true", help="discard a different run in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    run = sub.add_parser("run", help="run the active-learning protocol")
    run.add_argument("--data", required=True,
                     help="'fashion-mnist', 'digits', or a folder with one sub-folder per class")
    run.add_argument("--model", default="effnet-lite0-minilm", help="backbone name or path")
    run.add_argument("--pretrained", default=None, help="open_clip tag or weights file")
    run.add_argument("--adapter", choices=["prompt", "lora"], default="prompt")
    run.add_argument("--strategies", nargs="+", default=["random", "entropy",
                                                         "calibrated-entropy"],
                     help="e.g. random entropy calibrated-entropy badge coreset featdist "
                          "linear-probe")
    run.add_argument("--rounds", type=int, default=8, help="rounds, round 0 included")
    run.add_argument("--budget", type=int, default=None,
                     help="labels per round (default: the number of classes)")
    run.add_argument("--gamma", type=float, default=0.1, help="PCB candidate fraction")
    run.add_argument("--balance", choices=["pcb", "none"], default="pcb")
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--pool-size", type=int, default=None, help="subsample the pool (seeded)")
    run.add_argument("--test-size", type=int, default=None, help="subsample the test set")
    run.add_argument("--data-seed", type=int, default=0, help="seed of the subsamples")
    run.add_argument("--init", choices=["random", "zero-shot"], default="random",
                     help="how round 0 is chosen")
    run.add_argument("--warm-start", action="store_true",
                     help="start each round from the previous adapter")
    run.add_argument("--calibration", choices=["balanced", "sum", "effective"],
                     default="balanced", help="loss of the calibrated-* strategies")
    run.add_argument("--calibration-weight", type=float, default=1.0)
    run.add_argument("--epochs", type=int, default=10, help="training epochs per round")
    run.add_argument("--lr", type=float, default=None, help="learning rate")
    run.add_argument("--optimizer", choices=["sgd", "adamw"], default=None)
    run.add_argument("--n-ctx", type=int, default=None, help="prompt context vectors")
    run.add_argument("--batch-size", type=int, default=None)
    run.add_argument("--device", default="auto")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--overwrite", action="store_true", help="discard a different run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--ray", metavar="ADDRESS", default=None,
                     help="score the pool on Ray: 'local' (start Ray here), 'auto' (the "
                          "cluster of this machine) or a cluster address; same results")

    rep = sub.add_parser("report", help="tables and plots of a finished or partial run")
    rep.add_argument("out", help="the run's output folder")
    return p


def _config_from_args(args):
    from .experiment import ExperimentConfig

    est = {"max_epochs": args.epochs, "device": args.device}
    for name in ("lr", "optimizer", "n_ctx", "batch_size"):
        if getattr(args, name) is not None:
            est[name] = getattr(args, name)
    return ExperimentConfig(
        data=args.data, strategies=args.strategies, model=args.model,
        pretrained=args.pretrained, adapter=args.adapter, rounds=args.rounds,
        budget=args.budget, gamma=args.gamma, balance=args.balance, seeds=args.seeds,
        pool_size=args.pool_size, test_size=args.test_size, data_seed=args.data_seed,
        init=args.init, warm_start=args.warm_start, calibration=args.calibration,
        calibration_weight=args.calibration_weight, estimator_params=est,
    )


def main(argv=None) -> int:
    """Entry point of the ``skpeal`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on a usage or input error (reported in one line).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":  # the demo's backbone is built from local files only
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from . import experiment

        if args.command == "report":
            experiment.write_report(args.out)
            print(open(os.path.join(args.out, "summary.md")).read())
            print(f"tables and plots written to {args.out}")
            return 0
        if args.command == "demo":
            config = experiment.ExperimentConfig(**DEMO)
        else:
            config = _config_from_args(args)
        start = time.perf_counter()
        scorer, ray_started = None, False
        if getattr(args, "ray", None):
            from .distributed import RayPoolScorer, init_ray

            ray_started = init_ray(args.ray)
            scorer = RayPoolScorer()
        try:
            experiment.run_experiment(config, args.out, overwrite=args.overwrite,
                                      progress=not args.quiet, scorer=scorer)
        finally:
            if ray_started:
                import ray

                ray.shutdown()
        print(open(os.path.join(args.out, "summary.md")).read())
        print(f"finished in {time.perf_counter() - start:.0f} s; results, summary and plots "
              f"in {args.out}")
        return 0
    except KeyboardInterrupt:
        print("skpeal: interrupted; run the same command again to continue from the last "
              "completed round", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"skpeal: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
