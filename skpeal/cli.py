"""The ``skpeal`` command line: ``demo``, ``run`` and ``report``, thin over the experiment API,
and ``label``, thin over :mod:`skpeal.labeling`.

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
from .estimator import CLIPAdapterClassifier
from .experiment import STRATEGIES, ExperimentConfig
from .labeling import LabelingSession
from .labeling._project import read_meta

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
    _add_label_parser(sub)
    _add_export_parser(sub)
    return p


def _add_label_parser(sub):
    lab = sub.add_parser("label", help="label your own images in the browser (active learning)")
    lab.add_argument("images", help="folder of images (searched recursively)")
    lab.add_argument("--classes", nargs="+", default=None,
                     help="the class names (a resumed project remembers them)")
    lab.add_argument("--project", default=None,
                     help="project folder with the labels and models (default: IMAGES/.skpeal)")
    lab.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; any other host requires "
                          "the access token printed in the URL)")
    lab.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    lab.add_argument("--batch-size", type=int, default=None,
                     help="images per batch (default: the project's, else 10)")
    lab.add_argument("--model", default=None,
                     help="backbone name or path (default: the project's, else "
                          "effnet-lite0-minilm); a project keeps its backbone")
    lab.add_argument("--pretrained", default=None,
                     help="'default' (the backbone's own weights), an open_clip tag, a weights "
                          "file, or 'none' (random weights); default: the project's")
    lab.add_argument("--epochs", type=int, default=None,
                     help="training epochs per refit (default: the project's, else 10)")
    lab.add_argument("--strategy", default=None, choices=sorted(STRATEGIES),
                     help="how the next batch is picked (default: the project's, else auto: "
                          "DropQuery for the first 10 labels per class, then margin with PCB)")
    lab.add_argument("--annotator", default=None, help="name stored with every label")
    lab.add_argument("--preselect-threshold", type=float, default=None, metavar="P",
                     help="pre-select the model's suggestion when its probability is at "
                          "least P (default: the project's, else 0.8; 1: never)")
    lab.add_argument("--device", default=None, help="default: the project's, else auto")
    lab.add_argument("--ml-backend-port", type=int, default=None, metavar="N",
                     help="also serve Label Studio's ML backend on port N (same host; beyond "
                          "127.0.0.1 it needs basic auth: user skpeal, the access token)")
    lab.add_argument("--ray", metavar="ADDRESS", default=None,
                     help="encode and score the pool on Ray: 'local' (start Ray here), 'auto' "
                          "(the cluster of this machine) or host:port / ray://host:port; "
                          "images and project must be at the same paths on every node")


def _label(args) -> int:
    try:
        from .labeling.app import check_ports, serve
    except ImportError as exc:
        raise RuntimeError(
            f"skpeal label needs the web stack ({exc.name} is missing): "
            "pip install 'skpeal[label]'"
        ) from None
    check_ports(args.port, args.ml_backend_port)  # before the project folder is made

    project = args.project or os.path.join(args.images, ".skpeal")
    estimator = _label_estimator(project, args)
    session = LabelingSession(project, images=args.images, classes=args.classes,
                              estimator=estimator, batch_size=args.batch_size,
                              annotator=args.annotator,
                              preselect_threshold=args.preselect_threshold,
                              strategy=args.strategy, ray=args.ray)
    print(f"skpeal label: {session.n_images} images, classes {session.classes}, "
          f"project {project}")
    try:
        serve(session, host=args.host, port=args.port, ml_backend_port=args.ml_backend_port)
    finally:
        session.close()
    return 0


def _label_estimator(project, args):
    """The estimator of ``skpeal label``: the project's, with the flags given on top."""
    stored = read_meta(project).get("estimator")
    given = {k: v for k, v in (("model", args.model), ("max_epochs", args.epochs),
                               ("device", args.device)) if v is not None}
    if args.pretrained is not None:
        given["pretrained"] = _weights(args.pretrained)
    if stored is not None:  # a project remembers its backbone: another one is an error
        return CLIPAdapterClassifier(**{**stored, **given})
    params = dict(DEMO["estimator_params"], model="effnet-lite0-minilm", pretrained="default",
                  device="auto", max_epochs=10)
    return CLIPAdapterClassifier(**{**params, **given})


def _add_export_parser(sub):
    exp = sub.add_parser("export", help="export a labelling project's labels or model")
    exp.add_argument("project", help="the project folder (of 'skpeal label')")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                     help="csv: the labels in force; folders: <out>/<class>/<file> copies; "
                          "label-studio: Label Studio JSON tasks; adapter: the last round's "
                          "adapter (safetensors)")
    exp.add_argument("--out", default=None,
                     help="where to write (default: in the project folder: labels.csv, "
                          "export/, label-studio.json, adapter.safetensors)")


#: ``skpeal export --format`` values and their default output, in the project folder.
EXPORT_FORMATS = {"csv": "labels.csv", "folders": "export", "label-studio": "label-studio.json",
                  "adapter": "adapter.safetensors"}


def _export(args) -> int:
    if not os.path.exists(os.path.join(args.project, "labels.sqlite")):
        raise ValueError(f"{args.project!r} is not a labelling project (no labels.sqlite)")
    out = args.out or os.path.join(args.project, EXPORT_FORMATS[args.format])
    session = LabelingSession(args.project)  # its own estimator, classes and settings
    try:
        if args.format == "csv":
            session.export_csv(out)
            what = f"{len(session.store.labelled())} labels"
        elif args.format == "folders":
            what = f"{session.export_folder(out)} images"
        elif args.format == "label-studio":
            session.prepare()  # the last round's model (features stored: nothing re-encoded)
            what = f"{len(session.export_label_studio(out))} tasks"
        else:
            what = f"the adapter of round {session.export_adapter(out)}"
    finally:
        session.close()
    print(f"skpeal export: {what} written to {out}")
    return 0


def _weights(pretrained):
    """``--pretrained``: ``none`` (any case) means None, random weights."""
    return None if isinstance(pretrained, str) and pretrained.lower() == "none" else pretrained


def _config_from_args(args) -> ExperimentConfig:
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExperimentConfig)
              if f.name != "estimator_params"}
    fields["pretrained"] = _weights(fields["pretrained"])
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
        if args.command == "label":
            return _label(args)
        if args.command == "export":
            return _export(args)
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
    except FloatingPointError as exc:  # the training diverged: name the flags to change
        print(f"skpeal: error: {exc} (on the command line: --lr, --calibration-weight)",
              file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"skpeal: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a user error is reported in one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
