"""The ``skpeal`` command line: ``demo``, ``run`` and ``report``, thin over the experiment API.

The options of ``skpeal run`` are built from the fields of
:class:`~skpeal.experiment.ExperimentConfig`, so their defaults are the config's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from . import experiment
from .distributed import RayPoolScorer, init_ray, shutdown_ray
from .experiment import ExperimentConfig

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


#: Command-line options that set :class:`skpeal.CLIPAdapterClassifier` parameters of every
#: round (``estimator_params``); unset, the estimator's own defaults apply.
ESTIMATOR_OPTIONS = {
    "epochs": ("max_epochs", int, "training epochs per round"),
    "lr": ("lr", float, "learning rate"),
    "optimizer": ("optimizer", str, "'sgd' or 'adamw'"),
    "n-ctx": ("n_ctx", int, "prompt context vectors"),
    "batch-size": ("batch_size", int, "training batch size"),
    "device": ("device", str, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
}


def _add_config_options(run: argparse.ArgumentParser) -> None:
    """One option per :class:`~skpeal.experiment.ExperimentConfig` field, defaults from it."""
    for f in dataclasses.fields(ExperimentConfig):
        if f.name == "estimator_params":
            continue
        flag = "--" + f.name.replace("_", "-")
        cli = dict(f.metadata["cli"])
        if f.default is dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        if isinstance(default, bool):
            run.add_argument(flag, action="store_true", help=f.metadata["help"])
            continue
        required = cli.pop("required", False)
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        help = f.metadata["help"] + ("" if required else f" (default: {shown})")
        run.add_argument(flag, default=None if required else default, required=required,
                         help=help, **cli)
    for flag, (_, type_, help) in ESTIMATOR_OPTIONS.items():
        run.add_argument(f"--{flag}", type=type_, default=None,
                         help=f"{help} (default: the estimator's)")


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
    _add_config_options(run)
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--overwrite", action="store_true", help="discard a different run in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--ray", metavar="ADDRESS", default=None,
                     help="score the pool on Ray: 'local' (start Ray here), 'auto' (the "
                          "cluster of this machine) or a cluster address; same results")

    rep = sub.add_parser("report", help="tables and plots of a finished or partial run")
    rep.add_argument("out", help="the run's output folder")
    return p


def _config_from_args(args) -> ExperimentConfig:
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExperimentConfig)
              if f.name != "estimator_params"}
    est = {}
    for flag, (param, _, _) in ESTIMATOR_OPTIONS.items():
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            est[param] = value
    return ExperimentConfig(**fields, estimator_params=est)


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
            ray_started = init_ray(args.ray)
            scorer = RayPoolScorer()
        try:
            experiment.run_experiment(config, args.out, overwrite=args.overwrite,
                                      progress=not args.quiet, scorer=scorer)
        finally:
            if ray_started:
                shutdown_ray()
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
