"""Tables of a run: ``results.csv``, ``selections.json``, ``summary.csv`` / ``summary.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ..metrics import area_under_learning_curve
from . import plots
from .state import config_hash, read_config, read_state, recorded_pool_size

__all__ = ["write_report"]


def _load_rows(out: Path, cfg: dict):
    rows, last_rel = [], {}
    cfg_hash = config_hash(cfg)
    for p in sorted((out / "state").glob("*.json")):
        state = read_state(p, cfg_hash, n_pool=recorded_pool_size(out) or cfg.get("pool_size"),
                           max_rounds=cfg.get("rounds"))
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
    ``summary.csv`` and ``summary.md`` (per strategy: AULC, final accuracy, ECE and
    error-detection AUROC, mean ± std over seeds; the mean seconds of a query by a
    trained model, rounds 1 and later; total time), and, when matplotlib is installed,
    ``learning_curves.png`` and ``reliability.png``.

    Parameters
    ----------
    out : str or path-like
        The run's output folder.

    Returns
    -------
    results : pandas.DataFrame
        One row per (strategy, seed, round), as in ``results.csv``.
    """
    import pandas as pd  # heavy (about 0.5 s): imported only when a report is written

    out = Path(out)
    if not (out / "state").is_dir():
        raise ValueError(f"{out} holds no skpeal run (no state/ folder)")
    if not any((out / "state").glob("*.json")):
        raise ValueError(f"{out} holds no completed round yet")
    cfg = read_config(out)
    rows, last_rel = _load_rows(out, cfg)
    if not rows:
        raise ValueError(f"{out} holds no completed round yet")
    df = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(cfg["strategies"])}
    df = df.sort_values(["strategy", "seed", "round"], key=lambda c: c.map(order)
                        if c.name == "strategy" else c).reset_index(drop=True)
    scalar = ["strategy", "seed", "round", "n_labels", "accuracy", "macro_f1", "ece",
              "error_auroc", "fit_time", "query_time"]
    atomic_write_text(out / "results.csv", df[scalar].to_csv(index=False))
    atomic_write_text(
        out / "selections.json",
        df[["strategy", "seed", "round", "selected", "selected_labels"]].to_json(
            orient="records"),
    )
    summary = _summary(df, cfg["strategies"])
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "summary.md", _markdown(summary, cfg))
    if plots.available():
        plots.plot_learning_curves(df, cfg, out / "learning_curves.png")
        plots.plot_reliability(last_rel, cfg, out / "reliability.png")
    return df[scalar]


def _summary(df, strategies):
    import pandas as pd  # heavy (about 0.5 s): imported only when a report is written

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
                "final_error_auroc": g.error_auroc.iloc[-1],
                "final_labels": g.n_labels.iloc[-1],
                "rounds": len(g),
                # round 0 is random or zero-shot: the strategy's cost shows from round 1
                "query_time": g.query_time[g["round"] >= 1].mean(),
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
            "final_ece_std": p.final_ece.std(ddof=0),
            "final_error_auroc_mean": p.final_error_auroc.mean(),
            "final_error_auroc_std": p.final_error_auroc.std(ddof=0),
            "query_s_mean": p.query_time.mean(),
            "time_s_mean": p.time.mean(),
        })
    return pd.DataFrame(recs)


def _markdown(summary, cfg):
    lines = [
        f"# skpeal run: {cfg['data']}, {cfg['model']} ({cfg['adapter']})",
        "",
        "| strategy | seeds | rounds | labels | AULC | final accuracy | final ECE | "
        "final error AUROC | query (s) | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        query = "-" if np.isnan(r.query_s_mean) else f"{r.query_s_mean:.2f}"
        lines.append(
            f"| {r.strategy} | {r.seeds} | {r.rounds} | {r.final_labels} | "
            f"{r.aulc_mean:.3f} ± {r.aulc_std:.3f} | {r.final_accuracy_mean:.3f} ± "
            f"{r.final_accuracy_std:.3f} | {r.final_ece_mean:.3f} ± {r.final_ece_std:.3f} | "
            f"{r.final_error_auroc_mean:.3f} ± {r.final_error_auroc_std:.3f} | {query} | "
            f"{r.time_s_mean:.1f} |"
        )
    lines += ["", "AULC: area under the accuracy-vs-labels curve divided by its label range "
              "(a mean accuracy); error AUROC: how well the strategy's uncertainty ranks "
              "the wrong test predictions above the right ones; query: mean seconds of a "
              "query by a trained model (scoring the pool and selecting; rounds 1 and "
              "later); time: fit and query seconds of a whole run; ± is the standard "
              "deviation over seeds."]
    return "\n".join(lines) + "\n"
