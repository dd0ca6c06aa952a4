"""The active-learning protocol runner: rounds, budget, seeds, results, resumable runs.

Protocol (the paper's, ALGORITHM.md section 3): the pool is the training split with
labels hidden. Round 0 labels ``budget`` images, chosen at random or by a zero-shot
model; every later round scores the remaining pool with the previous round's model,
takes ``budget`` images with the strategy (optionally through PCB class balancing), and
trains a fresh adapter on every label gathered so far. After every round the model is
evaluated on the test split. Seeds run independently.

Everything a run has paid for is on disk after every completed round: the state of each
(strategy, seed) lives in ``<out>/state/*.json`` (see :mod:`skpeal.experiment.state`:
locked, hashed, validated), written atomically, so a run killed at
any moment and started again with the same arguments continues from the last completed
round and ends with the same results as an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.utils import Bunch

from .. import strategies as _st
from .._io import atomic_path, atomic_write_text
from ..estimator import CLIPAdapterClassifier
from ..labeling.loop import ActiveLearningLoop
from ..metrics import error_detection_auroc, expected_calibration_error, reliability_curve
from .baselines import LinearProbe
from .config import LINEAR_PROBE, ExperimentConfig
from .data import load_data
from .report import write_report
from .state import config_hash, locked, prepare_out, read_state, state_path, write_config

__all__ = ["make_loop", "run_experiment"]

_N_BINS = 15


# ------------------------------------------------------------------------------ rounds
def _estimator(config, calibrated: bool):
    """The template of every round's model of a strategy (its calibration set)."""
    return CLIPAdapterClassifier(
        model=config.model,
        pretrained=config.pretrained,
        adapter=config.adapter,
        calibration=config.calibration if calibrated else None,
        calibration_weight=config.calibration_weight,
        **config.estimator_params,
    )


def make_loop(config, data, strategy, seed, scorer=None):
    """The :class:`~skpeal.labeling.loop.ActiveLearningLoop` of one (strategy, seed).

    The same loop as a labelling session's: the runner only adds the simulated oracle
    (the pool's hidden labels), the evaluation and the state on disk.
    """
    if strategy == LINEAR_PROBE:
        return ActiveLearningLoop(LinearProbe(classes=np.arange(len(data.classnames))),
                                  strategy=_st.least_confidence_sampling, balance="none",
                                  init="random", random_state=seed)
    record = _st.get_strategy(strategy.removeprefix("calibrated-"))
    return ActiveLearningLoop(
        _estimator(config, strategy.startswith("calibrated-")),
        classes=list(range(len(data.classnames))), classnames=list(data.classnames),
        strategy=record.query, balance=config.balance, gamma=config.gamma,
        init="random" if record.needs_labels else config.init,
        warm_start=config.warm_start, random_state=seed, scorer=scorer,
    )


def _acquisition_scores(strategy: str, proba: np.ndarray) -> np.ndarray:
    """Per-sample uncertainty used to judge error detection: the strategy's own score of
    the probabilities when it has one (entropy otherwise)."""
    if strategy == LINEAR_PROBE:
        return _st.least_confidence_scores(proba)
    score = _st.get_strategy(strategy.removeprefix("calibrated-")).score
    return (score or _st.entropy_scores)(proba)


def _evaluate(strategy, proba, y_test):
    pred = proba.argmax(1)
    score = _acquisition_scores(strategy, proba)
    conf, acc, counts = reliability_curve(y_test, proba, n_bins=_N_BINS)
    return {
        "accuracy": float(accuracy_score(y_test, pred)),
        "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
        "ece": float(expected_calibration_error(y_test, proba, n_bins=_N_BINS)),
        "error_auroc": float(error_detection_auroc(y_test, pred, score)),
        "reliability": {
            "confidence": [None if np.isnan(c) else float(c) for c in conf],
            "accuracy": [None if np.isnan(a) else float(a) for a in acc],
            "count": [int(c) for c in counts],
        },
    }


def _run_one(config, data, strategy, seed, out, state, progress=None, probe_features=None,
             scorer=None):
    """Run (or resume) one (strategy, seed) from its validated ``state`` (or None)."""
    path = state_path(out, strategy, seed)
    if state is None:
        state = {"strategy": strategy, "seed": seed, "config_hash": config_hash(config.to_dict()),
                 "labelled": [], "rounds": []}
    if len(state["rounds"]) >= config.rounds:  # finished: nothing to rebuild
        return state
    loop = make_loop(config, data, strategy, seed, scorer)
    probe = strategy == LINEAR_PROBE
    X_pool = probe_features.pool if probe else data.X_train
    X_test = probe_features.test if probe else data.X_test
    labelled = np.asarray(state["labelled"], dtype=np.int64)
    done = len(state["rounds"])
    model = None
    if config.warm_start and not probe and done:  # resume from the saved adapter
        model = loop.estimator_for(done, len(labelled)).load_adapter(
            _adapter_path(out, strategy, seed, done - 1))
    steps = loop.rounds(X_pool, lambda rows: data.y_train[rows], config.rounds,
                        config.budget or len(data.classnames), labelled=labelled,
                        y_labelled=data.y_train[labelled], start=done, model=model)
    for step in steps:  # the simulated oracle: the pool's hidden labels
        if config.warm_start and not probe:
            # the next round starts from this adapter: keep it, so a resumed run can too
            with atomic_path(_adapter_path(out, strategy, seed, step.round)) as tmp:
                step.model.save_adapter(tmp)
        result = {"round": step.round, "n_labels": int(len(step.labelled)),
                  **_evaluate(strategy, step.model.predict_proba(X_test), data.y_test),
                  "fit_time": step.fit_time, "query_time": step.query_time,
                  "selected": [int(i) for i in step.selected],
                  "selected_labels": [int(v) for v in step.labels]}
        state["labelled"] = [int(i) for i in step.labelled]
        state["rounds"].append(result)
        atomic_write_text(path, json.dumps(state))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(strategy=strategy, seed=seed, acc=f"{result['accuracy']:.3f}")
    return state


def _adapter_path(out: Path, strategy: str, seed: int, rnd: int) -> Path:
    (out / "adapters").mkdir(exist_ok=True)
    return out / "adapters" / f"{strategy}__seed{seed}__round{rnd}.safetensors"


def run_experiment(config: ExperimentConfig, out, *, overwrite=False, progress=True,
                   data=None, scorer=None):
    """Run the protocol for every strategy and seed; resume what is on disk.

    Parameters
    ----------
    config : ExperimentConfig
        What to run.
    out : str or path-like
        Output folder. A folder holding a run of another configuration is refused
        unless ``overwrite``.
    overwrite : bool, default=False
        Discard a run of another configuration in ``out`` (its state files and adapters).
    progress : bool, default=True
        Show a tqdm bar over rounds.
    data : sklearn.utils.Bunch, optional
        Preloaded data (else :func:`load_data`).
    scorer : skpeal.distributed.RayPoolScorer or None, default=None
        Score the pool of every query on Ray (``skpeal run --ray``); the selections, and
        so the results, are the same as without (see the scorer for what is exact).

    Returns
    -------
    results : pandas.DataFrame
        One row per (strategy, seed, round). The same table is written to
        ``<out>/results.csv``, with plots and a summary (see :func:`write_report`).

    Raises
    ------
    ValueError
        A bad configuration, ``rounds * budget`` above the pool size, ``out`` in use by
        another process, holding another configuration (without ``overwrite``), or a
        state file that fails validation (named, with the way out).
    OSError
        A file cannot be written (named; no temporary file is left behind).
    """
    config.validate()
    out = Path(out)
    with locked(out):
        data = load_data(config) if data is None else data
        _check_budget(config, data)
        prepare_out(out, config, overwrite)
        cfg_hash = config_hash(config.to_dict())
        states = {}
        for strategy in config.strategies:
            for seed in config.seeds:
                path = state_path(out, strategy, seed)
                states[strategy, seed] = (
                    read_state(path, cfg_hash, n_pool=len(data.y_train),
                               max_rounds=config.rounds) if path.exists() else None
                )
        write_config(out, config)
        return _run_all(config, data, out, states, progress, scorer)


def _check_budget(config, data) -> None:
    """Refuse a run that would stop early because the pool runs out of images."""
    n_pool = len(data.y_train)
    budget = config.budget or len(data.classnames)
    if config.rounds * budget > n_pool:
        raise ValueError(
            f"rounds x budget = {config.rounds} x {budget} = {config.rounds * budget} labels, "
            f"but the pool holds only {n_pool} images; lower --rounds or --budget, or raise "
            "--pool-size"
        )
    if len(data.y_test) == 0:
        raise ValueError("the test split is empty: there is nothing to evaluate on")


def _run_all(config, data, out, states, progress, scorer=None):
    probe_features = None
    if any(len((states[LINEAR_PROBE, s] or {"rounds": ()})["rounds"]) < config.rounds
           for s in config.seeds if (LINEAR_PROBE, s) in states):  # rounds left to run
        probe_features = _frozen_features(config, data)
    total = len(config.strategies) * len(config.seeds) * config.rounds
    bar = None
    if progress:
        from tqdm.auto import tqdm  # only with progress bars: tqdm.auto probes for notebooks

        bar = tqdm(total=total, desc="AL rounds", unit="round")
    try:
        for strategy in config.strategies:
            for seed in config.seeds:
                state = states[strategy, seed]
                if bar is not None and state is not None:
                    bar.update(len(state["rounds"]))
                _run_one(config, data, strategy, seed, out, state, bar, probe_features, scorer)
    finally:
        if bar is not None:
            bar.close()
    return write_report(out)


def _frozen_features(config, data):
    """Frozen-backbone image features of the pool and the test set (for the linear probe)."""
    frozen = ActiveLearningLoop(_estimator(config, calibrated=False),
                                classes=list(range(len(data.classnames))),
                                classnames=list(data.classnames))
    est = frozen.zero_shot(data.X_train)  # max_epochs=0: the backbone as it ships
    return Bunch(pool=est.embed(data.X_train), test=est.embed(data.X_test))
