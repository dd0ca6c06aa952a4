"""The packaged image sets of ``benchmarks/lowbudget_eval.py`` (issue 22's evaluation)."""

import dataclasses
import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_clustpy = pytest.mark.skipif(
    importlib.util.find_spec("clustpy") is None,
    reason="the stick figures ship in the clustpy package: pip install clustpy==0.0.3")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "lowbudget_eval", ROOT / "benchmarks" / "lowbudget_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(bench, name, data_seed=0):
    config = bench._config(name, 0, "random", Namespace(rounds=10, epochs=3, n_ctx=4))
    config = dataclasses.replace(config, data_seed=data_seed)
    return bench._load(config)


def test_stickfigures_is_a_packaged_set(bench):
    assert "stickfigures" in bench.SETS and "stickfigures" in bench.PACKAGED
    assert bench.SETS["stickfigures"] == dict(pool_size=600, test_size=300)


@needs_clustpy
def test_stickfigures_shapes_classes_and_split(bench):
    data = _data(bench, "stickfigures")
    assert data.X_train.shape == (600, 20, 20, 3) and data.X_test.shape == (300, 20, 20, 3)
    assert data.X_train.dtype == np.uint8
    # grey images: the three channels are equal
    np.testing.assert_array_equal(data.X_train[..., 0], data.X_train[..., 2])
    assert len(data.classnames) == 9 and len(set(data.classnames)) == 9
    assert all(n.startswith("stick figure") for n in data.classnames)
    # 100 images per class, stratified: 66-67 in the pool, 33-34 in the test set
    assert set(np.bincount(data.y_train, minlength=9)) <= {66, 67}
    assert set(np.bincount(data.y_test, minlength=9)) <= {33, 34}
    # pool and test together are the 900 images, each once (disjoint, nothing lost)
    X_all, _ = bench._stickfigures_all()
    both = np.concatenate([data.X_train, data.X_test]).reshape(900, -1)
    key = np.lexsort(both.T[::-1])
    ref = X_all.reshape(900, -1)
    np.testing.assert_array_equal(both[key], ref[np.lexsort(ref.T[::-1])])
    other = _data(bench, "stickfigures", data_seed=1)
    assert not np.array_equal(other.y_train, data.y_train)  # data_seed draws another split


@needs_clustpy
def test_stickfigures_class_names_match_the_poses(bench):
    """The words given to the text side describe the images of their class."""
    X, y = bench._stickfigures_all()
    figure = X[..., 0] > 100  # light figure on a dark background
    cols = np.arange(20)
    for c, name in enumerate(_data(bench, "stickfigures").classnames):
        m = figure[y == c]
        head = m[:, :6]  # top rows: head and arms
        centre = (head * cols).sum((1, 2)) / head.sum((1, 2))
        if "leaning left" in name:
            assert (centre < 8.5).all()
        elif "leaning right" in name:
            assert (centre > 10.5).all()
        else:
            assert "arms raised" in name and ((centre > 8.5) & (centre < 10.5)).all()
        feet = m[:, -2:]  # the bottom rows: both outer corners only with legs apart
        apart = feet[:, :, :4].any((1, 2)) & feet[:, :, -4:].any((1, 2))
        assert apart.all() if "legs apart" in name else not apart.any()


def test_report_keeps_to_the_sets_asked_for(bench, tmp_path):
    """``--report-only --sets X`` reports X only, though other sets share the folder."""
    for s in ("stickfigures", "digits"):
        (tmp_path / s / "seed0" / "random" / "state").mkdir(parents=True)
    found = bench._glob(tmp_path, "*/seed*/*/state", ["stickfigures"])
    assert [f.relative_to(tmp_path).parts[0] for f in found] == ["stickfigures"]
    assert len(bench._glob(tmp_path, "*/seed*/*/state")) == 2


def test_unlabelled_rest_waits_for_the_rounds_picks(bench, tmp_path):
    """A run still going writes a round's pool scores before its picks: no rest yet."""
    (tmp_path / "config.json").write_text(json.dumps({"pool_size": 10}))
    (tmp_path / "selections.json").write_text(json.dumps(
        [{"round": 0, "selected": [1, 2]}, {"round": 1, "selected": [5]}]))
    np.testing.assert_array_equal(bench._rest(tmp_path, 0), [0, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(bench._rest(tmp_path, 1), [0, 3, 4, 6, 7, 8, 9])
    assert bench._rest(tmp_path, 2) is None


def test_kappa_table_finds_the_first_round_the_predictions_settle(bench, tmp_path):
    """Predictions that change in rounds 0-2 and stay the same from round 2 on: the mean
    kappa of the last 3 rounds reaches 1 at round 5; the row reports that round's
    labels and test accuracy, and the accuracy 5 rounds later."""
    import pandas as pd

    run = tmp_path / "digits" / "seed0" / "auto"
    (run / "pool").mkdir(parents=True)
    n, rounds, rng = 300, 11, np.random.default_rng(0)
    picks = [{"round": r, "selected": [2 * r, 2 * r + 1]} for r in range(rounds)]
    (run / "config.json").write_text(json.dumps({"pool_size": n}))
    (run / "selections.json").write_text(json.dumps(picks))
    for r in range(rounds):
        rest = bench._rest(run, r)
        pred = rest % 3 if r >= 2 else rng.integers(0, 3, rest.size)
        proba = np.full((rest.size, 3), 0.1)
        proba[np.arange(rest.size), pred] = 0.8
        np.savez(run / "pool" / f"auto__round{r}.npz", proba=proba)
    df = pd.DataFrame(dict(set="digits", strategy="auto", seed=0, round=range(rounds),
                           n_labels=[10 * (r + 1) for r in range(rounds)],
                           accuracy=[0.05 * r for r in range(rounds)]))
    rows = bench.kappa_table(tmp_path, df).splitlines()[2:]
    assert rows[0] == "| digits | auto | session (KappaAverage()); mean kappa at the last " \
                      "round 1.00 (median) | 1/1 | 60.0 | 0.250 | " \
                      "0.500 (1) | 0.500 |"
    assert rows[1].startswith("| digits | auto | threshold=0.9 | 1/1 | 60.0 |")
