"""Plots of a run: learning curves and reliability diagrams (needs matplotlib)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

__all__ = ["available", "plot_learning_curves", "plot_reliability"]


def available() -> bool:
    """Whether matplotlib is installed (plots are skipped otherwise)."""
    return importlib.util.find_spec("matplotlib") is not None


def plot_learning_curves(df, cfg, path):
    """Mean ± std test accuracy against the number of labels, one line per strategy."""
    import matplotlib  # optional: reports are written without plots when it is missing

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


def plot_reliability(last_rel, cfg, path):
    """Reliability curves of the last round, seeds pooled, one line per strategy."""
    import matplotlib  # optional: reports are written without plots when it is missing

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
