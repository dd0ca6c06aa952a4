"""The active-learning protocol runner: rounds, budget, seeds, results, resumable runs.

Protocol (the paper's, ALGORITHM.md section 3): the pool is the training split with
labels hidden. Round 0 labels ``budget`` images, chosen at random or by a zero-shot
model; every later round scores the remaining pool with the previous round's model,
takes ``budget`` images with the strategy (optionally through PCB class balancing), and
trains a fresh adapter on every label gathered so far. After every round the model is
evaluated on the test split. Seeds run independently.

Everything a run has paid for is on disk after every completed round: the state of each
(strategy, seed) lives in ``<out>/state/*.json``, written atomically, so a run killed at
any moment and started again with the same arguments continues from the last completed
round and ends with the same results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from . import strategies as _st
from .metrics import (
    area_under_learning_curve,
    error_detection_auroc,
    expected_calibration_error,
    reliability_curve,
)

__all__ = ["STRATEGIES", "ExperimentConfig", "load_data", "run_experiment", "write_report"]

#: Base strategy names; each also exists as ``"calibrated-<name>"`` (trained with the
#: calibration loss). ``"linear-probe"`` is LogisticRegression (on standardised frozen
#: image features) with modAL's uncertainty (least-confidence) sampling.
STRATEGIES = {
    "random": _st.random_sampling,
    "entropy": _st.entropy_sampling,
    "margin": _st.margin_sampling,
    "least-confidence": _st.least_confidence_sampling,
    "badge": _st.badge_sampling,
    "coreset": _st.coreset_sampling,
    "featdist": _st.featdist_sampling,
}
_SCORES = {"margin": _st.margin_scores, "least-confidence": _st.least_confidence_scores}
_LINEAR_PROBE = "linear-probe"
# Strategies that compare with labelled images: no zero-shot round 0 for them.
_NEEDS_LABELS = {"coreset", "featdist", _LINEAR_PROBE}
_N_BINS = 15


@dataclass
class ExperimentConfig:
    """Everything that defines an active-learning run (and so its results).

    Parameters
    ----------
    data : str
        ``"fashion-mnist"``, ``"digits"``, or a folder of images with one sub-folder per
        class (optionally under ``train/`` and ``test/``).
    strategies : list of str
        Names from :data:`STRATEGIES`, their ``"calibrated-"`` forms, or
        ``"linear-probe"``.
    model, pretrained : str or None
        The backbone (see :class:`skpeal.CLIPAdapterClassifier`).
    adapter : {"prompt", "lora"}
    rounds : int
        Number of rounds, round 0 included (>= 1).
    budget : int or None
        Images labelled per round; None means the number of classes.
    gamma : float
        Candidate fraction of PCB class balancing.
    balance : {"pcb", "none"}
    seeds : list of int
    pool_size, test_size : int or None
        Seeded, class-stratified subsamples of the train / test split (None keeps all).
    data_seed : int
        Seed of those subsamples and of the train/test split of a folder without one;
        the same for every strategy and seed, so they see the same pool.
    init : {"random", "zero-shot"}
        Round 0: random images, or the strategy applied to the zero-shot model. Round 0
        is random for strategies that need labelled images to compare with (coreset,
        featdist) and for the linear probe (it has no zero-shot model).
    warm_start : bool
        Start each round's adapter from the previous round's (the paper starts afresh).
    calibration : {"balanced", "sum", "effective"}
        Loss combination used by the ``calibrated-`` strategies.
    calibration_weight : float
    estimator_params : dict
        Further :class:`skpeal.CLIPAdapterClassifier` parameters (``max_epochs``,
        ``lr``, ``n_ctx``, ``batch_size``, ...).
    """

    data: str = "fashion-mnist"
    strategies: list = field(default_factory=lambda: ["random", "entropy", "calibrated-entropy"])
    model: str = "effnet-lite0-minilm"
    pretrained: str | None = None
    adapter: str = "prompt"
    rounds: int = 8
    budget: int | None = None
    gamma: float = 0.1
    balance: str = "pcb"
    seeds: list = field(default_factory=lambda: [0])
    pool_size: int | None = None
    test_size: int | None = None
    data_seed: int = 0
    init: str = "random"
    warm_start: bool = False
    calibration: str = "balanced"
    calibration_weight: float = 1.0
    estimator_params: dict = field(default_factory=dict)

    def validate(self) -> ExperimentConfig:
        """Check every field; return self. Raises ValueError naming the bad field."""
        known = set(STRATEGIES) | {f"calibrated-{s}" for s in STRATEGIES} | {_LINEAR_PROBE}
        if not self.strategies:
            raise ValueError("strategies: give at least one strategy")
        unknown = [s for s in self.strategies if s not in known]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {sorted(known)}")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("strategies: a strategy is listed twice")
        _positive_int("rounds", self.rounds)
        if self.budget is not None:
            _positive_int("budget", self.budget)
        if not 0.0 < float(self.gamma) <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.balance not in ("pcb", "none"):
            raise ValueError(f"balance must be 'pcb' or 'none', got {self.balance!r}")
        if self.init not in ("random", "zero-shot"):
            raise ValueError(f"init must be 'random' or 'zero-shot', got {self.init!r}")
        if self.adapter not in ("prompt", "lora"):
            raise ValueError(f"adapter must be 'prompt' or 'lora', got {self.adapter!r}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        for s in self.seeds:
            if not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"seeds must be non-negative integers, got {s!r}")
        for name in ("pool_size", "test_size"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        return self

    def to_dict(self) -> dict:
        """A JSON-ready dict of the fields."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# ------------------------------------------------------------------------------ data
def load_data(config: ExperimentConfig):
    """The pool / test data of a config as a :class:`sklearn.utils.Bunch`.

    Parameters
    ----------
    config : ExperimentConfig

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train`` (the pool), ``y_train`` (its hidden labels, class ids), ``X_test``,
        ``y_test``, ``classnames``.
    """
    from . import datasets

    if config.data == "fashion-mnist":
        return datasets.load_fashion_mnist(
            n_train=config.pool_size, n_test=config.test_size, random_state=config.data_seed
        )
    if config.data == "digits":
        data = datasets.load_digits_images(random_state=config.data_seed)
    else:
        if not os.path.isdir(config.data):
            raise ValueError(
                f"data: {config.data!r} is neither 'fashion-mnist', 'digits' nor a folder"
            )
        data = datasets.load_image_folder(config.data, random_state=config.data_seed)
    rng = np.random.RandomState(config.data_seed)
    for split, n in (("train", config.pool_size), ("test", config.test_size)):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        if n is not None and n < len(y):
            keep = np.sort(rng.choice(len(y), size=n, replace=False))
            data[f"X_{split}"], data[f"y_{split}"] = X[keep], y[keep]
    return data


# ------------------------------------------------------------------------------ state
def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _state_path(out: Path, strategy: str, seed: int) -> Path:
    return out / "state" / f"{strategy}__seed{seed}.json"


def _config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_out(out: Path, config: ExperimentConfig, overwrite: bool) -> None:
    cfg = config.to_dict()
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            old = None
        if old != cfg:
            if not overwrite:
                changed = sorted(k for k in cfg if old is None or old.get(k) != cfg.get(k))
                raise ValueError(
                    f"{out} holds a run with another configuration (differs in: "
                    f"{', '.join(changed)}); choose another --out, or pass --overwrite to "
                    "discard it"
                )
            for p in (out / "state").glob("*.json"):
                p.unlink()
    (out / "state").mkdir(parents=True, exist_ok=True)
    _atomic_write_text(cfg_path, json.dumps(cfg, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------ rounds
def _seed_for(*parts) -> int:
    """A seed derived from ``parts`` (stable across processes, unlike ``hash``)."""
    words = [int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:4], "little") for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _make_estimator(config, data, calibrated: bool, seed: int, rnd: int, zero_shot=False):
    from .estimator import CLIPAdapterClassifier

    params = dict(max_epochs=10)
    params.update(config.estimator_params)
    if zero_shot:
        params["max_epochs"] = 0
    return CLIPAdapterClassifier(
        model=config.model,
        pretrained=config.pretrained,
        adapter=config.adapter,
        classes=list(range(len(data.classnames))),
        classnames=list(data.classnames),
        calibration=config.calibration if calibrated else None,
        calibration_weight=config.calibration_weight,
        random_state=_seed_for("fit", seed, rnd),
        **params,
    )


class _LinearProbe:
    """LogisticRegression on frozen image features; proba over every class."""

    def __init__(self, features, n_classes, seed):
        self.features, self.n_classes, self.seed = features, n_classes, seed
        self.classes_ = np.arange(n_classes)

    def fit(self, idx, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.seen_ = np.unique(y)
        self.lr_ = None
        if len(self.seen_) > 1:
            # standardised features: normalised CLIP-style features are tiny per dimension
            self.lr_ = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=2000, random_state=self.seed)
            )
            self.lr_.fit(self.features[idx], y)
        return self

    def predict_proba(self, idx):
        out = np.zeros((len(idx), self.n_classes))
        if self.lr_ is None:
            out[:, self.seen_[0]] = 1.0
        else:
            out[:, self.lr_.classes_] = self.lr_.predict_proba(self.features[idx])
        return out


def _acquisition_scores(strategy: str, proba: np.ndarray) -> np.ndarray:
    """Per-sample uncertainty used to judge error detection (entropy by default)."""
    base = strategy.removeprefix("calibrated-")
    if base in _SCORES:
        return _SCORES[base](proba)
    if strategy == _LINEAR_PROBE:
        return _st.least_confidence_scores(proba)
    return _st.entropy_scores(proba)


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


def _query(config, strategy, model, X_pool_rows, pool_idx, labelled, y_labelled, n, rng_seed,
           scorer=None):
    """Pick ``n`` pool positions (indices into ``pool_idx``)."""
    base = strategy.removeprefix("calibrated-")
    if strategy == _LINEAR_PROBE:
        # The cheap thing users would otherwise do: modAL's own uncertainty sampling on a
        # LogisticRegression over frozen features. The probe's "X" is row indices into
        # the precomputed feature matrix.
        try:
            from modAL.uncertainty import uncertainty_sampling
        except ImportError:  # the same criterion (least confidence) without modAL
            idx, _ = _st.least_confidence_sampling(model, pool_idx, n, random_state=rng_seed)
            return np.asarray(idx)
        idx, _ = uncertainty_sampling(model, pool_idx, n_instances=n)
        return np.asarray(idx)
    fn = STRATEGIES[base]
    if config.balance == "pcb":
        fn = _st.class_balanced(fn, config.gamma)
    if scorer is not None:  # the same selection, scored on Ray
        idx, _ = scorer.query(fn, model, X_pool_rows, n, random_state=rng_seed,
                              X_labeled=labelled, y_labeled=y_labelled)
        return np.asarray(idx)
    idx, _ = fn(model, X_pool_rows, n, random_state=rng_seed,
                X_labeled=labelled, y_labeled=y_labelled)
    return np.asarray(idx)


def _run_one(config, data, strategy, seed, out, progress=None, probe_features=None,
             scorer=None):
    """Run (or resume) one (strategy, seed) and return its state."""
    path = _state_path(out, strategy, seed)
    state = json.loads(path.read_text()) if path.exists() else None
    if state is None:
        state = {"strategy": strategy, "seed": seed, "labelled": [], "rounds": []}
    n_classes = len(data.classnames)
    budget = config.budget or n_classes
    n_pool = len(data.y_train)
    calibrated = strategy.startswith("calibrated-")
    X_pool, y_pool = data.X_train, data.y_train
    model = None
    done = len(state["rounds"])
    for rnd in range(done, config.rounds):
        labelled = np.asarray(state["labelled"], dtype=np.int64)
        remaining = np.setdiff1d(np.arange(n_pool), labelled)
        n = min(budget, len(remaining))
        if n == 0:
            break
        t0 = time.perf_counter()
        if rnd == 0 and (config.init == "random" or strategy.removeprefix("calibrated-")
                         in _NEEDS_LABELS):
            rng = np.random.default_rng(_seed_for("init", seed))
            picked = np.sort(rng.choice(remaining, size=n, replace=False))
        else:
            if model is None:  # resumed, or zero-shot round 0: rebuild the previous model
                model = _previous_model(config, data, strategy, seed, rnd, labelled,
                                        calibrated, probe_features, out)
            rows = remaining if strategy == _LINEAR_PROBE else X_pool[remaining]
            pos = _query(config, strategy, model, rows, remaining, X_pool[labelled],
                         y_pool[labelled], n, _seed_for("query", strategy, seed, rnd),
                         scorer)
            picked = remaining[pos]
        query_time = time.perf_counter() - t0
        labelled = np.concatenate([labelled, picked])
        t0 = time.perf_counter()
        model = _fit_model(config, data, strategy, seed, rnd, labelled, calibrated,
                           probe_features, previous=model)
        fit_time = time.perf_counter() - t0
        if config.warm_start and strategy != _LINEAR_PROBE:
            # the next round starts from this adapter: keep it, so a resumed run can too
            adapter = _adapter_path(out, strategy, seed, rnd)
            tmp = adapter.with_name(f".{adapter.name}.tmp")
            model.save_adapter(tmp)
            os.replace(tmp, adapter)
        if strategy == _LINEAR_PROBE:
            proba = model.predict_proba(np.arange(len(data.y_test)) + n_pool)
        else:
            proba = model.predict_proba(data.X_test)
        result = {"round": rnd, "n_labels": int(len(labelled)),
                  **_evaluate(strategy, proba, data.y_test),
                  "fit_time": fit_time, "query_time": query_time,
                  "selected": [int(i) for i in picked],
                  "selected_labels": [int(v) for v in y_pool[picked]]}
        state["labelled"] = [int(i) for i in labelled]
        state["rounds"].append(result)
        _atomic_write_text(path, json.dumps(state))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(strategy=strategy, seed=seed, acc=f"{result['accuracy']:.3f}")
    return state


def _adapter_path(out: Path, strategy: str, seed: int, rnd: int) -> Path:
    (out / "adapters").mkdir(exist_ok=True)
    return out / "adapters" / f"{strategy}__seed{seed}__round{rnd}.safetensors"


def _previous_model(config, data, strategy, seed, rnd, labelled, calibrated, probe_features,
                    out):
    """The model of round ``rnd - 1`` (zero-shot before round 0), rebuilt on resume."""
    if rnd == 0:
        est = _make_estimator(config, data, calibrated, seed, 0, zero_shot=True)
        return est.fit(data.X_train[:1])
    if config.warm_start and strategy != _LINEAR_PROBE:
        est = _make_estimator(config, data, calibrated, seed, rnd - 1)
        return est.load_adapter(_adapter_path(out, strategy, seed, rnd - 1))
    # a fresh adapter every round: refitting round rnd - 1 reproduces it exactly
    return _fit_model(config, data, strategy, seed, rnd - 1, labelled, calibrated,
                      probe_features)


def _fit_model(config, data, strategy, seed, rnd, labelled, calibrated, probe_features,
               previous=None):
    y = data.y_train[labelled]
    if strategy == _LINEAR_PROBE:
        return _LinearProbe(probe_features, len(data.classnames), seed).fit(labelled, y)
    est = _make_estimator(config, data, calibrated, seed, rnd)
    if config.warm_start and previous is not None:
        est = previous.set_params(random_state=est.random_state, warm_start=True)
    return est.fit(data.X_train[labelled], y)


def run_experiment(config: ExperimentConfig, out, *, overwrite=False, progress=True,
                   data=None, scorer=None):
    """Run the protocol for every strategy and seed; resume what is on disk.

    Parameters
    ----------
    config : ExperimentConfig
    out : str or path-like
        Output folder. A folder holding a run of another configuration is refused
        unless ``overwrite``.
    overwrite : bool, default=False
        Discard a run of another configuration in ``out``.
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
    """
    config.validate()
    out = Path(out)
    data = load_data(config) if data is None else data
    _prepare_out(out, config, overwrite)
    probe_features = None
    if _LINEAR_PROBE in config.strategies:
        probe_features = _frozen_features(config, data)
    total = len(config.strategies) * len(config.seeds) * config.rounds
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="AL rounds", unit="round")
    try:
        for strategy in config.strategies:
            for seed in config.seeds:
                state_path = _state_path(out, strategy, seed)
                if bar is not None and state_path.exists():
                    bar.update(len(json.loads(state_path.read_text())["rounds"]))
                _run_one(config, data, strategy, seed, out, bar, probe_features, scorer)
    finally:
        if bar is not None:
            bar.close()
    return write_report(out)


def _frozen_features(config, data):
    """Frozen-backbone image features of pool then test (for the linear probe)."""
    est = _make_estimator(config, data, False, 0, 0, zero_shot=True).fit(data.X_train[:1])
    return np.concatenate([est.embed(data.X_train), est.embed(data.X_test)])


# ------------------------------------------------------------------------------ report
def _load_rows(out: Path):
    rows, last_rel = [], {}
    for p in sorted((out / "state").glob("*.json")):
        state = json.loads(p.read_text())
        for r in state["rounds"]:
            row = {k: v for k, v in r.items() if k != "reliability"}
            row.update(strategy=state["strategy"], seed=state["seed"])
            rows.append(row)
        if state["rounds"]:
            last_rel[(state["strategy"], state["seed"])] = state["rounds"][-1]["reliability"]
    return rows, last_rel


def write_report(out):
    """Tables and plots of a finished or partial run in ``out``.

    Writes ``results.csv`` (one row per strategy, seed and round: labelled count,
    accuracy, macro-F1, ECE, error-detection AUROC, fit and query seconds),
    ``selections.json`` (the pool indices picked each round, with their labels),
    ``summary.csv`` and ``summary.md`` (per strategy: AULC, final accuracy and ECE, mean ±
    std over seeds, total time), and, when matplotlib is installed,
    ``learning_curves.png`` and ``reliability.png``.

    Parameters
    ----------
    out : str or path-like

    Returns
    -------
    results : pandas.DataFrame
    """
    import pandas as pd

    out = Path(out)
    if not (out / "state").is_dir():
        raise ValueError(f"{out} holds no skpeal run (no state/ folder)")
    rows, last_rel = _load_rows(out)
    if not rows:
        raise ValueError(f"{out} holds no completed round yet")
    cfg = json.loads((out / "config.json").read_text())
    df = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(cfg["strategies"])}
    df = df.sort_values(["strategy", "seed", "round"], key=lambda c: c.map(order)
                        if c.name == "strategy" else c).reset_index(drop=True)
    scalar = ["strategy", "seed", "round", "n_labels", "accuracy", "macro_f1", "ece",
              "error_auroc", "fit_time", "query_time"]
    _atomic_write_text(out / "results.csv", df[scalar].to_csv(index=False))
    _atomic_write_text(
        out / "selections.json",
        df[["strategy", "seed", "round", "selected", "selected_labels"]].to_json(
            orient="records"),
    )
    summary = _summary(df, cfg["strategies"])
    _atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    _atomic_write_text(out / "summary.md", _markdown(summary, cfg))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return df[scalar]
    _plot_learning_curves(df, cfg, out / "learning_curves.png")
    _plot_reliability(last_rel, cfg, out / "reliability.png")
    return df[scalar]


def _summary(df, strategies):
    import pandas as pd

    recs = []
    for s in [s for s in strategies if s in set(df.strategy)]:
        d = df[df.strategy == s]
        per_seed = []
        for _, g in d.groupby("seed"):
            g = g.sort_values("round")
            per_seed.append({
                "aulc": area_under_learning_curve(g.n_labels.to_numpy(), g.accuracy.to_numpy()),
                "final_accuracy": g.accuracy.iloc[-1],
                "final_ece": g.ece.iloc[-1],
                "final_labels": g.n_labels.iloc[-1],
                "rounds": len(g),
                "time": (g.fit_time + g.query_time).sum(),
            })
        p = pd.DataFrame(per_seed)
        recs.append({
            "strategy": s,
            "seeds": len(p),
            "rounds": int(p.rounds.min()),
            "final_labels": int(p.final_labels.min()),
            "aulc_mean": p.aulc.mean(), "aulc_std": p.aulc.std(ddof=0),
            "final_accuracy_mean": p.final_accuracy.mean(),
            "final_accuracy_std": p.final_accuracy.std(ddof=0),
            "final_ece_mean": p.final_ece.mean(),
            "time_s_mean": p.time.mean(),
        })
    return pd.DataFrame(recs)


def _markdown(summary, cfg):
    lines = [
        f"# skpeal run: {cfg['data']}, {cfg['model']} ({cfg['adapter']})",
        "",
        "| strategy | seeds | rounds | labels | AULC | final accuracy | final ECE | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.strategy} | {r.seeds} | {r.rounds} | {r.final_labels} | "
            f"{r.aulc_mean:.3f} ± {r.aulc_std:.3f} | {r.final_accuracy_mean:.3f} ± "
            f"{r.final_accuracy_std:.3f} | {r.final_ece_mean:.3f} | {r.time_s_mean:.1f} |"
        )
    lines += ["", "AULC: area under the accuracy-vs-labels curve divided by its label range "
              "(a mean accuracy); ± is the standard deviation over seeds."]
    return "\n".join(lines) + "\n"


def _plot_learning_curves(df, cfg, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s in [s for s in cfg["strategies"] if s in set(df.strategy)]:
        g = df[df.strategy == s].groupby("n_labels").accuracy
        mean, std = g.mean(), g.std(ddof=0).fillna(0.0)
        ax.plot(mean.index, mean.values, marker="o", ms=3, label=s)
        ax.fill_between(mean.index, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("number of labelled images")
    ax.set_ylabel("test accuracy")
    n_seeds = df.seed.nunique()
    data_name = os.path.basename(cfg["data"].rstrip("/"))
    ax.set_title(f"{data_name} - {cfg['model']} ({cfg['adapter']}); mean ± std over "
                 f"{n_seeds} seed{'s' if n_seeds > 1 else ''}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_reliability(last_rel, cfg, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for s in cfg["strategies"]:
        curves = [v for (st, _), v in last_rel.items() if st == s]
        if not curves:
            continue
        counts = np.sum([c["count"] for c in curves], axis=0)
        conf = np.nansum([np.nan_to_num(np.array(c["confidence"], dtype=float)) * c["count"]
                          for c in curves], axis=0)
        acc = np.nansum([np.nan_to_num(np.array(c["accuracy"], dtype=float)) * c["count"]
                         for c in curves], axis=0)
        ok = counts > 0
        ax.plot(conf[ok] / counts[ok], acc[ok] / counts[ok], marker="o", ms=3, label=s)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("reliability, last round (all seeds pooled)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
