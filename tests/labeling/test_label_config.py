"""``skpeal label``'s options come from :class:`LabelConfig` (as ``skpeal run``'s from
``ExperimentConfig``): one field per option, defaults and checks in one place."""

import argparse
import dataclasses

import pytest

from skpeal._fields import add_options, from_args, option
from skpeal.cli import _parser, main
from skpeal.labeling._project import SETTINGS
from skpeal.labeling.config import (
    NEW_PROJECT_ESTIMATOR,
    LabelConfig,
    ProjectSettings,
)


def _label_args(*argv):
    return _parser().parse_args(["label", *argv])


def test_parser_defaults_are_the_dataclass_defaults():
    args = _label_args("photos")
    fields = dataclasses.fields(LabelConfig)
    assert {f.name for f in fields} == set(vars(args)) - {"command"}  # one option per field
    for f in fields:
        if f.name != "images":
            assert getattr(args, f.name) == f.default, f.name
    config = from_args(LabelConfig, args)
    assert config == LabelConfig(images="photos")
    assert config.validate(flags=True) == config


def test_the_help_shows_the_defaults_that_apply():
    helps = {a.dest: a.help for a in _parser()._subparsers._group_actions[0]
             .choices["label"]._actions}
    assert helps["port"].endswith("(default: 8000)")
    assert helps["batch_size"].endswith(f"(default: the project's, else "
                                        f"{ProjectSettings().batch_size})")
    assert helps["epochs"].endswith(f"else {NEW_PROJECT_ESTIMATOR['max_epochs']})")
    assert "else 0.8" in helps["preselect_threshold"] and "else auto" in helps["strategy"]


def test_the_session_reads_the_same_defaults():
    assert SETTINGS == dataclasses.asdict(ProjectSettings())
    assert SETTINGS["batch_size"] == 10 and SETTINGS["preselect_threshold"] == 0.8


@pytest.mark.parametrize("argv, match", [
    (["--port", "70000"], "--port must be a port number from 0 to 65535"),
    (["--ml-backend-port", "-5"], "--ml-backend-port must be a port number"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--preselect-threshold", "1.5"], "--preselect-threshold must be"),
    (["--host", " "], "--host must be a non-empty string"),
])
def test_a_bad_value_is_one_line_naming_the_option(tmp_path, capsys, argv, match):
    (tmp_path / "imgs").mkdir()
    assert main(["label", str(tmp_path / "imgs"), "--classes", "a", "b", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "imgs" / ".skpeal").exists()


def test_programmatic_use_names_the_field():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        LabelConfig(images="x", batch_size=0).validate()
    with pytest.raises(SystemExit):  # argparse: an unknown strategy
        _label_args("photos", "--strategy", "nope")
    assert _label_args("photos", "--strategy", "margin").strategy == "margin"


def test_estimator_params_project_first_then_flags():
    c = LabelConfig(images="x", epochs=3, pretrained="NONE")
    assert c.estimator_params() == {**NEW_PROJECT_ESTIMATOR, "max_epochs": 3,
                                    "pretrained": None}
    stored = {"model": "skpeal-tiny", "max_epochs": 1}
    assert c.estimator_params(stored) == {"model": "skpeal-tiny", "max_epochs": 3,
                                          "pretrained": None}


def test_adding_an_option_is_one_field():
    @dataclasses.dataclass(frozen=True)
    class WithRay(LabelConfig):
        ray: str | None = option("score on Ray at ADDRESS", None, metavar="ADDRESS",
                                 fallback="no Ray")

    parser = argparse.ArgumentParser()
    add_options(parser, WithRay)
    args = parser.parse_args(["photos", "--ray", "auto"])
    assert from_args(WithRay, args).ray == "auto"
    assert "(default: no Ray)" in parser.format_help()


def test_the_help_lists_the_registered_strategies_when_shown(capsys):
    from skpeal.strategies import register_strategy, unregister_strategy

    register_strategy("help-listed", score=lambda p: 1 - p.max(axis=1))  # after the import
    try:
        with pytest.raises(SystemExit):
            main(["label", "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
        assert "help-listed" in text and "margin" in text and "dropquery" in text
        assert _label_args("photos", "--strategy", "help-listed").strategy == "help-listed"
    finally:
        unregister_strategy("help-listed")
