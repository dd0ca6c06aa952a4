"""Bad input that used to end in a traceback, a hang or a silently wrong result now gets
an error naming the problem and the way out (issue 26)."""

import json
import socket
import sys
import time

import numpy as np
import pytest

from skpeal import CLIPAdapterClassifier
from skpeal.cli import main

from .conftest import TINY

X = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)


def _est(**kw):
    return CLIPAdapterClassifier(**{**TINY, "max_epochs": 1, **kw})


@pytest.mark.parametrize("y, match", [
    (["a", None, "a", "b", "b", "a"], r"y\[1\] is None"),
    (["a", 1, "a", "b", 1, "a"], "mixes numbers and strings"),
    (np.array(["a", 1, "a", "b", 1, "a"], dtype=object), "mixes numbers and strings"),
    ([0, 1, 0, 1, float("nan"), 1], r"y\[4\] is nan"),
])
def test_labels_with_none_or_mixed_types_are_refused(y, match):
    with pytest.raises(ValueError, match=match):
        _est().fit(X, y)


@pytest.mark.parametrize("classes, match", [(["a", None], r"classes\[1\] is None"),
                                            (["a", 1], "mixes")])
def test_classes_with_none_or_mixed_types_are_refused(classes, match):
    with pytest.raises(ValueError, match=match):
        _est(classes=classes).fit(X, ["a"] * 6)


def test_boolean_labels_survive_save_and_load(tmp_path):
    y = [True, False, True, False, True, False]
    est = _est().fit(X, y)
    est.save_adapter(tmp_path / "a.safetensors")
    back = _est().load_adapter(tmp_path / "a.safetensors")
    assert back.classes_.tolist() == [False, True]
    assert back.predict(X).dtype == bool
    np.testing.assert_array_equal(back.predict(X), est.predict(X))


def test_a_malformed_model_config_file_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        _est(model=str(bad)).fit(X, [0, 1] * 3)
    bad.write_text(json.dumps({"embed_dim": 16}))
    with pytest.raises(ValueError, match="not an open_clip model config"):
        _est(model=str(bad)).fit(X, [0, 1] * 3)


def test_pretrained_file_that_is_not_weights_is_named(tmp_path):
    junk = tmp_path / "w.bin"
    junk.write_bytes(b"these are not weights")
    with pytest.raises(ValueError, match="w.bin.*cannot be loaded as weights"):
        _est(pretrained=str(junk)).fit(X, [0, 1] * 3)


def test_class_balanced_refuses_a_strategy_that_returns_too_few_candidates():
    from skpeal.strategies import class_balanced

    est = _est().fit(X, [0, 1] * 3)

    def short(classifier, X_pool, n_instances=1, **kw):
        return np.arange(2), np.zeros(2)  # always two, whatever was asked

    query = class_balanced(short, gamma=1.0)  # asks for every pool image as candidates
    with pytest.raises(ValueError, match="returned 2 candidate.*asked for 6"):
        query(est, X, n_instances=2)


def test_report_refuses_a_state_index_outside_the_recorded_pool(tmp_path, capsys):
    from skpeal.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(data="digits", model="skpeal-tiny", pretrained=None,
                           strategies=["random"], rounds=1, seeds=[0], test_size=50,
                           estimator_params=dict(n_ctx=4, max_epochs=1))
    run_experiment(cfg, tmp_path, progress=False)
    path = tmp_path / "state" / "random__seed0.json"
    state = json.loads(path.read_text())
    state["labelled"][0] = state["rounds"][0]["selected"][0] = 1_000_000
    path.write_text(json.dumps(state))
    assert main(["report", str(tmp_path)]) == 2
    assert "outside the pool" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--port", "-1"), ("--port", "70000"),
                                         ("--ml-backend-port", "-5")])
def test_label_refuses_bad_ports_before_doing_anything(tmp_path, capsys, flag, value):
    pytest.importorskip("fastapi")
    (tmp_path / "imgs").mkdir()
    assert main(["label", str(tmp_path / "imgs"), "--classes", "a", "b", flag, value]) == 2
    err = capsys.readouterr().err
    assert "from 0 to 65535" in err and value in err
    assert not (tmp_path / "imgs" / ".skpeal").exists()


def test_ray_missing_names_the_install_command(monkeypatch):
    from skpeal.distributed import init_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'skpeal\[ray\]'"):
        init_ray("local")


def test_run_with_ray_missing_exits_with_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["run", "--data", "digits", "--model", "skpeal-tiny", "--out",
                 str(tmp_path / "o"), "--ray", "local"]) == 2
    assert "pip install 'skpeal[ray]'" in capsys.readouterr().err


def test_a_ray_address_where_nothing_listens_fails_fast_naming_it():
    pytest.importorskip("ray")
    from skpeal.distributed import init_ray

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", "127.0.0.1:1"):
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=f"no Ray cluster answers at {address}"):
            init_ray(address)
        assert time.monotonic() - t0 < 30
    with pytest.raises(ValueError, match="host:port"):
        init_ray("http://127.0.0.1:8265")
