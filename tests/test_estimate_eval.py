"""The accuracy estimators' harness (``benchmarks/estimate_eval.py``) on a made-up run."""

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from skpeal.stopping import accuracy_interval

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location(
        "estimate_eval", ROOT / "benchmarks" / "estimate_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_run(root, n_pool=30, rounds=3, batch=4, k=3, seed=0):
    """A run folder as lowbudget_eval.py writes it: config, selections, pool npz."""
    rng = np.random.default_rng(seed)
    run = root / "toy" / "seed0" / "random"
    (run / "pool").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"pool_size": n_pool}))
    y = rng.integers(0, k, n_pool)
    order = rng.permutation(n_pool)
    sel, labelled, probas = [], [], []
    for r in range(rounds):
        picked = order[r * batch:(r + 1) * batch]
        sel.append({"round": r, "selected": picked.tolist(),
                    "selected_labels": y[picked].tolist()})
        labelled += picked.tolist()
        rest = np.setdiff1d(np.arange(n_pool), labelled)
        z = rng.normal(size=(n_pool, k))
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        probas.append(p)
        extra = {}
        if r:
            extra = dict(batch_conf=probas[r - 1].max(1)[picked],
                         batch_correct=probas[r - 1].argmax(1)[picked] == y[picked])
        np.savez(run / "pool" / f"random__round{r}.npz", proba=p[rest],
                 correct=p[rest].argmax(1) == y[rest], **extra)
    (run / "selections.json").write_text(json.dumps(sel))
    return y, order, probas


def test_build_records_out_of_sample_answers_and_truth(harness, tmp_path):
    y, order, probas = _fake_run(tmp_path)
    cache = tmp_path / "cache.pkl"
    harness.build(tmp_path, cache)
    recs = pickle.loads(cache.read_bytes())
    assert [r["round"] for r in recs] == [0, 1, 2]
    assert [len(r["oos_label"]) for r in recs] == [0, 4, 8]
    r = recs[2]
    # the answers of round 2's batch are round 1's model on it, with its labels
    batch = order[8:12]
    assert np.allclose(r["oos_proba"][4:], probas[1][batch], atol=1e-6)
    assert (r["oos_label"][4:] == y[batch]).all() and (r["oos_round"] == [1] * 4 + [2] * 4).all()
    rest = np.setdiff1d(np.arange(30), order[:12])
    assert r["true"] == pytest.approx((probas[2][rest].argmax(1) == y[rest]).mean())
    # the session's estimator as the harness calls it: ages 1 and 0
    conf = probas[0][order[4:8]].max(1).tolist() + probas[1][batch].max(1).tolist()
    ok = list(probas[0][order[4:8]].argmax(1) == y[order[4:8]]) + list(
        probas[1][batch].argmax(1) == y[batch])
    want = accuracy_interval(probas[2][rest], batch_confidence=conf, batch_correct=ok,
                             batch_age=[1] * 4 + [0] * 4)
    assert harness.chosen(r) == pytest.approx(want, abs=1e-6)


def test_report_scores_every_estimator(harness, tmp_path):
    _fake_run(tmp_path)
    cache = tmp_path / "cache.pkl"
    harness.build(tmp_path, cache)
    df = harness.evaluate(pickle.loads(cache.read_bytes()), harness.ESTIMATORS)
    assert set(df.estimator) == set(harness.ESTIMATORS) and len(df) == 3 * len(harness.ESTIMATORS)
    assert ((df.low <= df.est + 1e-12) & (df.est <= df.high + 1e-12)).all()
    assert np.allclose(df.err, 100 * (df.est - df.true).abs())
    text = harness.summary(df, ("toy",))
    assert "chosen on (toy)" in text and "| all |" in text


def test_link_finds_the_previous_models_on_the_pool_and_on_the_answers(harness, tmp_path):
    y, order, probas = _fake_run(tmp_path, rounds=4)
    cache = tmp_path / "cache.pkl"
    harness.build(tmp_path, cache)
    recs = harness.link(pickle.loads(cache.read_bytes()))
    assert "prev_pool" not in recs[0]
    for t in (1, 2, 3):
        rest = np.setdiff1d(np.arange(30), order[:4 * (t + 1)])
        # round t-1's model on round t's pool, row for row
        assert np.allclose(recs[t]["prev_pool"], probas[t - 1][rest], atol=1e-6)
    # answers of batch 3 (judged by model 2): model 1 on the same images; batch 1: unknown
    r = recs[3]
    assert np.isnan(r["oos_pprev"][:4]).all()
    assert np.allclose(r["oos_pprev"][8:], probas[1][order[12:16]], atol=1e-6)
    assert np.allclose(r["oos_pprev"][4:8], probas[0][order[8:12]], atol=1e-6)
    # the chosen estimator is skpeal's, fed the previous model's confidence on the pool
    conf, ok = harness._oos(r)
    want = accuracy_interval(r["pool"].astype(np.float64), batch_confidence=conf,
                             batch_correct=ok, batch_age=[2] * 4 + [1] * 4 + [0] * 4,
                             previous_confidence=r["prev_pool"].max(1))
    assert harness.chosen(r) == pytest.approx(want, abs=1e-9)


def test_oracles_measure_against_the_truth(harness, tmp_path):
    _fake_run(tmp_path, rounds=4)
    cache = tmp_path / "cache.pkl"
    harness.build(tmp_path, cache)
    recs = harness.link(pickle.loads(cache.read_bytes()))
    out = harness.oracles(recs)
    assert list(out.index) == ["toy", "all"]
    assert list(out.columns) == ["previous map", "previous accuracy", "random 10",
                                 "random 25", "random all"]
    # the previous model's true accuracy on the current pool, against the current one's
    want = np.median([100 * abs(r["pool_correct_prev"].mean() - r["true"]) for r in recs[1:]])
    assert out.loc["toy", "previous accuracy"] == pytest.approx(want, abs=0.05)
    assert np.isfinite(out.to_numpy()).all()


def test_stopping_replay_counts_first_stops(harness):
    import pandas as pd

    rows = []
    for rnd, (est, true) in enumerate([(0.3, 0.3), (0.5, 0.5), (0.5, 0.6), (0.5, 0.7),
                                       (0.5, 0.8), (0.5, 0.9)]):
        rows.append(dict(set="toy", seed=0, strategy="random", round=rnd, estimator="e",
                         est=est, low=est - 0.2, high=est + 0.2, true=true))
    out = harness.stopping_replay(pd.DataFrame(rows), "e")
    # flat from round 1: the gain over 2 rounds is 0 at rounds 3 and 4, so the plain rule
    # (patience 2) stops at round 4, 10 points short of the last round; the session's
    # setting (interval 0.2 > 0.03 a side) never stops
    plain = out.loc["plain plateau"]
    assert plain.runs_stopped == 1 and plain.median_round == 4
    assert plain.median_to_gain == pytest.approx(10.0)
    assert out.loc["session (max_half_width=0.03)"].runs_stopped == 0
    assert out.loc["max_half_width=0.25"].runs_stopped == 1
