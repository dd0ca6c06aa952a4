"""``skpeal run`` gives the results it gave before a refactoring (a fixed tiny run).

The golden files were written by skpeal at 0b3b48f (before the strategy registry) with the
configuration below; a refactoring that keeps the behaviour keeps them. Timing columns are
left out. Update the files only with a change that is meant to alter results (and say so
in CHANGES.md).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from skpeal.experiment import ExperimentConfig, run_experiment

DATA = Path(__file__).parent / "data"


def test_fixed_run_matches_the_golden_results(tmp_path):
    cfg = ExperimentConfig(
        data="digits", model="skpeal-tiny", pretrained=None,
        strategies=["random", "calibrated-entropy", "margin", "badge", "coreset", "featdist"],
        rounds=3, seeds=[0], pool_size=150, test_size=60,
        estimator_params=dict(n_ctx=4, max_epochs=2))
    df = run_experiment(cfg, tmp_path, progress=False)
    got = pd.read_csv(tmp_path / "results.csv").drop(columns=["fit_time", "query_time"])
    want = pd.read_csv(DATA / "golden_results.csv")
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-12)
    sel = pd.read_json(tmp_path / "selections.json")
    gold = pd.read_json(DATA / "golden_selections.json")
    assert len(sel) == len(gold) == len(df)
    for (_, a), (_, b) in zip(sel.iterrows(), gold.iterrows()):
        assert (a.strategy, a.seed, a["round"]) == (b.strategy, b.seed, b["round"])
        np.testing.assert_array_equal(a.selected, b.selected)
