import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from skpeal.experiment import ExperimentConfig, run_experiment, write_report

TIMING = ["fit_time", "query_time"]


def _config(**kw):
    base = dict(data="digits", model="skpeal-tiny", strategies=["random", "calibrated-entropy"],
                rounds=3, seeds=[0, 1], pool_size=200, test_size=100,
                estimator_params=dict(n_ctx=4, max_epochs=2))
    base.update(kw)
    return ExperimentConfig(**base)


def test_tiny_end_to_end_writes_every_output(tmp_path):
    df = run_experiment(_config(), tmp_path, progress=False)
    assert len(df) == 2 * 2 * 3
    for name in ("config.json", "results.csv", "selections.json", "summary.csv", "summary.md",
                 "learning_curves.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    res = pd.read_csv(tmp_path / "results.csv")
    assert set(res.columns) >= {"strategy", "seed", "round", "n_labels", "accuracy", "macro_f1",
                                "ece", "error_auroc", "fit_time", "query_time"}
    assert sorted(res.n_labels.unique()) == [10, 20, 30]  # budget = number of classes
    assert res.accuracy.between(0, 1).all() and res.ece.between(0, 1).all()
    sel = pd.read_json(tmp_path / "selections.json")
    for _, g in sel.groupby(["strategy", "seed"]):
        picked = np.concatenate(g.sort_values("round").selected.to_list())
        assert len(picked) == len(set(picked)) == 30  # no image labelled twice
        assert all(len(s) == len(lab) for s, lab in zip(g.selected, g.selected_labels))
    from skpeal.experiment import load_data

    data_y = load_data(_config()).y_train
    row = sel.iloc[0]
    assert list(data_y[row.selected]) == list(row.selected_labels)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.strategy) == ["random", "calibrated-entropy"]
    assert summary.aulc_mean.between(0, 1).all()


def test_same_config_is_reproducible_and_a_changed_config_is_refused(tmp_path):
    a = run_experiment(_config(seeds=[0]), tmp_path / "a", progress=False)
    b = run_experiment(_config(seeds=[0]), tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(a.drop(columns=TIMING), b.drop(columns=TIMING))
    with pytest.raises(ValueError, match="another configuration.*rounds"):
        run_experiment(_config(seeds=[0], rounds=4), tmp_path / "a", progress=False)
    c = run_experiment(_config(seeds=[0], rounds=2), tmp_path / "a", overwrite=True,
                       progress=False)
    assert c["round"].max() == 1


def test_rerun_of_a_finished_run_does_no_work(tmp_path, monkeypatch):
    from skpeal.experiment import runner

    cfg = _config(seeds=[0], strategies=["random", "linear-probe"], rounds=2)
    run_experiment(cfg, tmp_path, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "state").glob("*.json")}

    def no_encoding(*a, **k):
        raise AssertionError("a finished run encoded the images again")

    monkeypatch.setattr(runner, "_frozen_features", no_encoding)
    monkeypatch.setattr(runner.ActiveLearningLoop, "fit", no_encoding)
    run_experiment(cfg, tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "state").glob("*.json")} == before


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(strategies=["nope"]), "unknown strategy"),
        (dict(strategies=[]), "at least one"),
        (dict(rounds=0), "rounds"),
        (dict(budget=0), "budget"),
        (dict(gamma=0.0), "gamma"),
        (dict(balance="x"), "balance"),
        (dict(init="x"), "init"),
        (dict(seeds=[]), "seed"),
        (dict(data="/no/such/folder"), "folder"),
        (dict(estimator_params={"optimizer": "adam"}), "estimator_params: optimizer"),
        (dict(estimator_params={"epochs": 3}), "estimator_params: .*epochs"),
    ],
)
def test_bad_config(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        run_experiment(_config(**kw), tmp_path, progress=False)


def test_zero_shot_init_linear_probe_and_feature_strategies(tmp_path):
    cfg = _config(strategies=["linear-probe", "coreset", "featdist", "badge"], seeds=[0],
                  rounds=2, init="zero-shot", balance="none")
    df = run_experiment(cfg, tmp_path, progress=False)
    assert set(df.strategy) == {"linear-probe", "coreset", "featdist", "badge"}
    assert (df.groupby("strategy").n_labels.max() == 20).all()


def test_report_of_a_partial_run_and_of_an_empty_folder(tmp_path):
    run_experiment(_config(seeds=[0], rounds=2), tmp_path / "r", progress=False)
    state = tmp_path / "r" / "state" / "random__seed0.json"
    s = json.loads(state.read_text())
    s["rounds"] = s["rounds"][:1]  # as if killed after round 0
    s["labelled"] = s["rounds"][0]["selected"]
    state.write_text(json.dumps(s))
    df = write_report(tmp_path / "r")
    assert len(df[df.strategy == "random"]) == 1
    with pytest.raises(ValueError, match="no skpeal run"):
        write_report(tmp_path / "empty")


def _cli(out, rounds):
    return [sys.executable, "-m", "skpeal.cli", "run", "--data", "digits", "--model",
            "skpeal-tiny", "--strategies", "random", "calibrated-entropy", "--rounds",
            str(rounds), "--seeds", "0", "--pool-size", "300", "--test-size", "100",
            "--epochs", "3", "--n-ctx", "4", "--out", str(out), "--quiet"]


def test_killed_run_resumes_to_the_same_results(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    full = tmp_path / "full"
    subprocess.run(_cli(full, 5), check=True, env=env, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed, 5), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = killed / "state" / "random__seed0.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and len(json.loads(state.read_text())["rounds"]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = pd.read_csv(killed / "results.csv") if (killed / "results.csv").exists() else None
    assert partial is None or len(partial) < 10
    subprocess.run(_cli(killed, 5), check=True, env=env, capture_output=True, timeout=600)
    a = pd.read_csv(full / "results.csv").drop(columns=TIMING)
    b = pd.read_csv(killed / "results.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((full / "selections.json").read_text()) == json.loads(
        (killed / "selections.json").read_text())


def test_warm_start_run_resumes_from_saved_adapters(tmp_path):
    cfg = _config(seeds=[0], strategies=["entropy"], warm_start=True)
    full = run_experiment(cfg, tmp_path / "full", progress=False)
    assert len(list((tmp_path / "full" / "adapters").glob("*.safetensors"))) == 3
    # a run that stopped after round 1: drop round 2 from a copy of the state
    import shutil

    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    state = tmp_path / "cut" / "state" / "entropy__seed0.json"
    s = json.loads(state.read_text())
    last = s["rounds"].pop()
    s["labelled"] = s["labelled"][: -len(last["selected"])]
    state.write_text(json.dumps(s))
    resumed = run_experiment(cfg, tmp_path / "cut", progress=False)
    pd.testing.assert_frame_equal(full.drop(columns=TIMING), resumed.drop(columns=TIMING))
    cold = run_experiment(_config(seeds=[0], strategies=["entropy"]), tmp_path / "cold",
                          progress=False)
    assert not cold.drop(columns=TIMING).equals(full.drop(columns=TIMING))


def test_random_is_not_class_balanced():
    """PCB would follow the model's pseudo-labels; random picks stay plain random."""
    from sklearn.utils import Bunch

    from skpeal import strategies as st
    from skpeal._validation import derive_seed
    from skpeal.experiment.runner import make_loop

    class Skewed:  # 90% of the pool predicted as class 0
        classes_ = np.arange(3)

        def predict_proba(self, X):
            p = np.full((len(X), 3), 0.1)
            p[:, 0] = 0.8
            p[::10] = [0.1, 0.8, 0.1]
            return p

    cfg, data = _config(balance="pcb"), Bunch(classnames=["a", "b", "c"])
    X = np.arange(200)[:, None].astype(float)
    for seed in range(5):
        loop = make_loop(cfg, data, "random", seed)
        assert loop.query_function() is st.random_sampling
        got = loop.query(1, 10, np.arange(200), model=Skewed(), X_pool=X)
        want, _ = st.random_sampling(Skewed(), X, 10, random_state=derive_seed("query", seed, 1))
        np.testing.assert_array_equal(got, want)
    # a model-driven strategy is still balanced
    got = make_loop(cfg, data, "entropy", 0).query(1, 4, np.arange(200), model=Skewed(),
                                                   X_pool=X)
    assert set(Skewed().predict_proba(X[got]).argmax(1)) == {0, 1}


def test_plain_and_calibrated_strategies_share_the_query_seed(tmp_path):
    # round 0 from the zero-shot model: the two models are identical, so are the picks
    run_experiment(_config(strategies=["entropy", "calibrated-entropy"], rounds=1, seeds=[0],
                           init="zero-shot"), tmp_path, progress=False)
    sel = pd.read_json(tmp_path / "selections.json")
    picks = {r.strategy: list(r.selected) for r in sel.itertuples()}
    assert picks["entropy"] == picks["calibrated-entropy"]


def test_prompt_lora_adapter_is_accepted(tmp_path):
    df = run_experiment(_config(adapter="prompt+lora", strategies=["entropy"], rounds=2,
                                seeds=[0]), tmp_path, progress=False)
    assert len(df) == 2
