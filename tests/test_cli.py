import subprocess
import sys

import pytest

from skpeal.cli import main


@pytest.mark.parametrize(
    "args, match",
    [
        (["--strategies", "foo"], "unknown strategy 'foo'"),
        (["--budget", "0"], "budget must be an integer >= 1"),
        (["--rounds", "0"], "rounds must be an integer >= 1"),
        (["--data", "/no/such/folder"], "neither 'fashion-mnist'"),
        (["--optimizer", "adam"], "optimizer must be one of ('sgd', 'adamw')"),
    ],
)
def test_bad_arguments_give_one_clear_line(tmp_path, capsys, args, match):
    base = ["run", "--data", "digits", "--model", "skpeal-tiny", "--out", str(tmp_path / "o"),
            "--quiet"]
    # later flags win in argparse, so the bad value overrides the base one
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skpeal: error:") and match in err[0]


def test_run_options_come_from_the_config_fields():
    import dataclasses

    from skpeal.cli import _parser
    from skpeal.experiment import ExperimentConfig

    args = _parser().parse_args(["run", "--data", "digits", "--out", "o"])
    for f in dataclasses.fields(ExperimentConfig):
        if f.name in ("data", "estimator_params"):
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert getattr(args, f.name) == default, f.name
    assert args.epochs is None and args.lr is None  # the estimator's defaults apply


def test_empty_class_folder_and_unreadable_image(tmp_path, capsys):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.png").write_bytes(b"not a png")
    assert main(["run", "--data", str(root), "--model", "skpeal-tiny", "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("skpeal: error:") and "\n" not in err and "b" in err


def test_run_and_report_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "skpeal.cli", "run", "--data", "digits", "--model",
           "skpeal-tiny", "--strategies", "random", "entropy", "--rounds", "2", "--seeds", "0",
           "--pool-size", "100", "--test-size", "50", "--epochs", "1", "--n-ctx", "4",
           "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| random |" in done.stdout and (out / "learning_curves.png").exists()
    rep = subprocess.run([sys.executable, "-m", "skpeal.cli", "report", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0 and "| entropy |" in rep.stdout


def test_pretrained_default_is_the_backbones_own_and_none_is_random():
    from skpeal.cli import _config_from_args, _parser

    base = ["run", "--data", "digits", "--out", "o"]
    assert _config_from_args(_parser().parse_args(base)).pretrained == "default"
    for word in ("none", "None"):
        args = _parser().parse_args(base + ["--pretrained", word])
        assert _config_from_args(args).pretrained is None
    args = _parser().parse_args(base + ["--pretrained", "openai"])
    assert _config_from_args(args).pretrained == "openai"


def test_run_options_read_the_registries_when_the_parser_is_built(capsys):
    from skpeal.cli import _parser
    from skpeal.strategies import register_strategy, unregister_strategy

    register_strategy("late-one", score=lambda p: 1 - p.max(axis=1))
    try:
        helps = {a.dest: a.help for a in _parser()._subparsers._group_actions[0]
                 .choices["run"]._actions}
        assert "late-one" in helps["strategies"] and "calibrated-late-one" in helps["strategies"]
        run_help = _parser()._subparsers._group_actions[0].choices["run"].format_help()
        assert "prompt+lora" in run_help  # the adapters, listed from their registry
    finally:
        unregister_strategy("late-one")


@pytest.mark.parametrize("field, value, match", [
    ("calibration_weight", -1.0, "calibration_weight must be"),
    ("data_seed", -1, "data_seed must be an integer >= 0"),
    ("seeds", [], "seeds: give at least one seed"),
    ("seeds", [0, 1.5], "seeds must be an integer >= 0"),
    ("strategies", ["random", "random"], "listed twice"),
    ("adapter", "nope", "adapter must be one of"),
    ("model", "", "model must be a non-empty string"),
])
def test_experiment_config_checks_each_field(field, value, match):
    from skpeal.experiment import ExperimentConfig

    with pytest.raises(ValueError, match=match):
        ExperimentConfig(**{field: value}).validate()
