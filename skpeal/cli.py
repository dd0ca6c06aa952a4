"""The ``skpeal`` command line: ``demo``, ``run`` and ``report``, thin over the experiment API,
and ``label``, thin over :mod:`skpeal.labeling`.

The options of ``skpeal run`` are built from the fields of
:class:`~skpeal.experiment.ExperimentConfig`, those of ``skpeal label`` from
:class:`~skpeal.labeling.config.LabelConfig` (by :func:`skpeal._fields.add_options`), so
their defaults, help and checks are the configs'.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import TYPE_CHECKING

from ._fields import add_options, from_args
from .labeling._starting import StartingSession
from .labeling.config import MODEL_FREE_INIT, NEW_PROJECT_INIT, LabelConfig

__all__ = ["main"]

if TYPE_CHECKING:
    from .experiment import ExperimentConfig


def __getattr__(name):
    # torch, open_clip and the experiment runner are imported on first use: a restarted
    # ``skpeal label`` serves its pending batch before they are loaded
    if name == "LabelingSession":
        from .labeling.session import LabelingSession

        return LabelingSession
    if name == "CLIPAdapterClassifier":
        from .estimator import CLIPAdapterClassifier

        return CLIPAdapterClassifier
    raise AttributeError(f"module 'skpeal.cli' has no attribute {name!r}")


def _heavy(name):
    """A lazily imported name (or what a test put in its place)."""
    return globals()[name] if name in globals() else __getattr__(name)

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
    from .experiment import ExperimentConfig  # torch: only for the commands that run it

    add_options(run, ExperimentConfig)
    for flag, (_, type_, help) in ESTIMATOR_OPTIONS.items():
        run.add_argument(f"--{flag}", type=type_, default=None,
                         help=f"{help} (default: the estimator's)")


def _parser(label_only=False) -> argparse.ArgumentParser:
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
    if not label_only:  # skpeal label starts without importing the experiment runner
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
    add_options(lab, LabelConfig)  # one option per field


def _label(args) -> int:
    config = from_args(LabelConfig, args).validate(flags=True)
    project = config.project or os.path.join(config.images, ".skpeal")
    new = not os.path.exists(os.path.join(project, "labels.sqlite"))
    if new and config.init is None:  # a new project's first batch in seconds
        config = dataclasses.replace(config, init=NEW_PROJECT_INIT)
    if not new:  # other settings than the project's: the session's error, before serving
        from .labeling._project import SETTINGS, read_meta, resolve_settings

        resolve_settings(project, read_meta(project).get("settings", {}),
                         {k: v for k, v in config.session_kwargs().items() if k in SETTINGS})
    session = None
    quick = new and config.ml_backend_port is None and config.ray is None
    drawn = quick and config.init in MODEL_FREE_INIT  # a first batch that needs no model
    if quick and not drawn:
        # a new project: the page at once, the session (torch imported, the folder listed,
        # the model loaded, the first images encoded) built behind it by the web app's
        # worker thread; the classes and the folder are checked first
        session = StartingSession.new_project(project, lambda: _label_session(project, config),
                                              images=config.images, classes=config.classes)
    try:
        from .labeling.app import check_ports, serve
    except ImportError as exc:
        raise RuntimeError(
            f"skpeal label needs the web stack ({exc.name} is missing): "
            "pip install 'skpeal[label]'"
        ) from None
    check_ports(config.port, config.ml_backend_port)  # before the project folder is made
    if drawn:
        # the project is made (the folder listed, the batch drawn) and served as a
        # restarted one while the model loads
        from .labeling._project import SETTINGS, start_project_without_model

        start_project_without_model(project, config.images, config.classes,
                                    {k: v for k, v in config.session_kwargs().items()
                                     if k in SETTINGS})
    if not new or drawn:
        # a restart: the pending batch is served from the store while the model loads
        # (and Label Studio's ML backend answers /health at once, /predict 503 until then)
        session = StartingSession(project, lambda: _label_session(project, config),
                                  annotator=config.annotator)
        if not session.ready and config.ml_backend_port is None:
            session.close()  # no pending batch: nothing to show before the model
            session = None
    if session is None:
        session = _label_session(project, config)
    if new and getattr(session, "starting", False) and session.store is None:
        print(f"skpeal label: new project {project}, classes {session.classes}; the images "
              "are listed and the model loaded behind the page")
    else:
        print(f"skpeal label: {session.n_images} images, classes {session.classes}, "
              f"project {project}")
    try:
        serve(session, host=config.host, port=config.port,
              ml_backend_port=config.ml_backend_port)
    finally:
        session.close()
    if getattr(session, "build_error", None) is not None:  # a session that could not open
        raise session.build_error
    return 0


def _label_session(project, config: LabelConfig):
    """The session of ``skpeal label``: the project's estimator, with the flags given on top
    (a project remembers its backbone: another one is an error)."""
    from .labeling._project import read_meta  # torch (the strategies): after the page is up

    estimator = _heavy("CLIPAdapterClassifier")(
        **config.estimator_params(read_meta(project).get("estimator")))
    return _heavy("LabelingSession")(project, images=config.images, estimator=estimator,
                                     **config.session_kwargs())


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
    session = _heavy("LabelingSession")(args.project)  # its own estimator, classes and settings
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
    from .experiment import ExperimentConfig  # torch: only for the commands that run it

    est = {}
    for flag, (param, _, _) in ESTIMATOR_OPTIONS.items():
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            est[param] = value
    config = from_args(ExperimentConfig, args, estimator_params=est)
    config.pretrained = _weights(config.pretrained)
    return config.validate(flags=True)


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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(label_only=argv[:1] == ["label"])
    args = parser.parse_args(argv)
    if args.command == "demo":  # the demo's backbone is built from local files only
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.command == "label":
            return _label(args)
        if args.command == "export":
            return _export(args)
        from . import experiment  # torch: not needed by label and export

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
            from .distributed import RayPoolScorer, init_ray  # the ray extra

            ray_started = init_ray(args.ray)
            scorer = RayPoolScorer()
        try:
            experiment.run_experiment(config, args.out, overwrite=args.overwrite,
                                      progress=not args.quiet, scorer=scorer)
        finally:
            if ray_started:
                from .distributed import shutdown_ray

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
