"""Label-free accuracy estimators compared on simulated labelling sessions (issue 22 item 6).

Two steps, the first slow once, the second seconds:

``build``
    Reads the runs of ``benchmarks/lowbudget_eval.py`` (``--runs``, its ``--out`` folder:
    for every tracked run and round, the round model's probabilities on the still-unlabelled
    pool and whether each of its predictions is right, plus ``selections.json``) and writes
    one cache file (``--cache``, a pickle) with, per simulated round, what an estimator may
    see and the truth:

    * ``pool``: the round model's probabilities on the unlabelled pool;
    * ``oos``: every *out-of-sample* answer so far: for each batch labelled in rounds
      ``1..t``, the probabilities of the model of the round before on it (a model that never
      trained on those images) and the label, with the round it was answered in;
    * ``labelled``: the round model's probabilities on its own training labels, when the
      runs recorded them (``lowbudget_eval.py`` records them since this harness exists;
      the runs of the published table predate it, so the comparison below does not use
      them);
    * the set, seed, query strategy, round, number of labels and classes;
    * the truth: the round model's accuracy on the unlabelled pool.

``report``
    Evaluates every estimator of :data:`ESTIMATORS` on every cached round and prints, per
    set and overall, the median absolute error of the estimate, how often its interval
    covers the truth, and its median width. The estimators were compared, and the session's
    one chosen, on the two sets of ``--choose-on`` (default fashion-mnist and digits, fixed
    before any number was looked at); twemoji and nrletters are held out and reported apart.

    PYTHONPATH=$PWD python benchmarks/estimate_eval.py build --runs /tmp/lowbudget_eval \\
        --cache /tmp/estimate_cache.pkl
    PYTHONPATH=$PWD python benchmarks/estimate_eval.py report --cache /tmp/estimate_cache.pkl \\
        --md docs/_static/estimate_eval.md --rst docs/_static/estimate_eval.rst

The out-of-sample answers are not a sample of the pool: a query strategy picks the images
it finds hard (or typical), so their accuracy is biased. The estimators that use them
correct for the selection by *conditioning on the confidence*: they learn ``P(correct |
confidence)`` from the answers (temperature, Platt or ATC threshold) and average it over
the pool's confidences. This is exact when the strategy selects images through the model's
confidence only (uncertainty sampling; random sampling trivially) and approximate for
coverage strategies; the error table says how far it goes.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

CHOOSE_ON = ("fashion-mnist", "digits")


# --------------------------------------------------------------------------- build
def build(runs, cache):
    """One record per (set, seed, strategy, round) of the lowbudget runs in ``runs``."""
    records = []
    for sel_file in sorted(Path(runs).glob("*/seed*/*/selections.json")):
        run_dir = sel_file.parent
        pool_dir = run_dir / "pool"
        if not pool_dir.is_dir() or not any(pool_dir.glob("*.npz")):
            continue  # strategy whose pool scores were not tracked
        name, seed, strategy = run_dir.parts[-3], int(run_dir.parts[-2][4:]), run_dir.parts[-1]
        sel = sorted(json.loads(sel_file.read_text()), key=lambda s: s["round"])
        n_pool = json.loads((run_dir / "config.json").read_text())["pool_size"]
        labelled, oos, prev = [], [], None
        for s in sel:
            rnd = s["round"]
            f = pool_dir / f"{strategy}__round{rnd}.npz"
            if not f.exists():
                break
            z = np.load(f)
            batch, labels = np.asarray(s["selected"]), np.asarray(s["selected_labels"])
            if prev is not None:  # the previous model's answers on the batch labelled now
                row = {int(i): k for k, i in enumerate(prev[1])}
                p = prev[0][[row[int(i)] for i in batch]]
                if "batch_conf" in z:  # the run's own record of the same answers
                    assert np.allclose(p.max(1), z["batch_conf"]), (f, "batch mismatch")
                oos += [(p[k], int(labels[k]), rnd) for k in range(len(batch))]
            labelled += [int(i) for i in batch]
            rest = np.setdiff1d(np.arange(n_pool), labelled)
            proba = z["proba"].astype(np.float64)
            assert len(proba) == len(rest), (f, len(proba), len(rest))
            records.append(dict(
                set=name, seed=seed, strategy=strategy, round=rnd, n_labels=len(labelled),
                n_classes=proba.shape[1], pool=proba.astype(np.float32),
                pool_correct=z["correct"].astype(bool),
                oos_proba=np.array([o[0] for o in oos], dtype=np.float32).reshape(
                    -1, proba.shape[1]),
                oos_label=np.array([o[1] for o in oos], dtype=np.int64),
                oos_round=np.array([o[2] for o in oos], dtype=np.int64),
                labelled=z["labelled_proba"] if "labelled_proba" in z else None,
                true=float(z["correct"].mean())))
            prev = (proba, rest)
    with open(cache, "wb") as fh:
        pickle.dump(records, fh)
    print(f"{len(records)} rounds from {runs} -> {cache}")


def _rows_of(pool, batch):
    """Rows of ``pool`` holding the probability rows of ``batch`` (each row used once)."""
    rows = []
    for b in batch:
        hit = [h for h in np.flatnonzero((pool == b).all(1)) if h not in rows]
        if not hit:
            raise ValueError("a labelled image is not in the previous round's pool")
        rows.append(hit[0])
    return np.asarray(rows, dtype=np.intp)


def link(records):
    """Add what consecutive rounds of one run tell, in memory (the cache is not changed).

    * ``prev_pool``: the previous round's model on this round's pool (the previous pool
      less the batch labelled now, found by its stored probabilities);
    * ``oos_pprev``: for each out-of-sample answer, the model of two rounds before its label
      on the same image (NaN for the first batch: there was no such model).
    """
    runs = {}
    for r in records:
        runs.setdefault((r["set"], r["seed"], r["strategy"]), []).append(r)
    for rs in runs.values():
        rs.sort(key=lambda r: r["round"])
        pp = {}
        for a, b in zip(rs, rs[1:]):
            rows = _rows_of(a["pool"], b["oos_proba"][b["oos_round"] == b["round"]])
            keep = np.setdiff1d(np.arange(len(a["pool"])), rows)
            b["prev_pool"] = a["pool"][keep]
            b["pool_correct_prev"] = a["pool_correct"][keep]  # truth: oracles only
            if "prev_pool" in a:
                pp[b["round"]] = a["prev_pool"][rows]
        for r in rs:
            k = r["pool"].shape[1]
            r["oos_pprev"] = np.concatenate(
                [pp.get(s, np.full((int((r["oos_round"] == s).sum()), k), np.nan, np.float32))
                 for s in range(1, r["round"] + 1)] or [np.zeros((0, k), np.float32)])
    return records


# --------------------------------------------------------------------------- estimators
# Each estimator takes one record and returns (estimate, low, high). Intervals are 90%
# nominal unless their name says otherwise.
Z90 = stats.norm.ppf(0.95)


def _conf(p):
    return np.asarray(p, dtype=np.float64).max(1)


def _oos(r, last=None):
    """Confidence and correctness of the out-of-sample answers (optionally last rounds)."""
    p, y, rd = r["oos_proba"], r["oos_label"], r["oos_round"]
    if last is not None and len(rd):
        keep = rd > rd.max() - last
        p, y = p[keep], y[keep]
    return _conf(p) if len(p) else np.zeros(0), (p.argmax(1) == y) if len(p) else np.zeros(0)


def _clip(e, lo, hi):
    return (float(np.clip(e, 0, 1)), float(np.clip(min(lo, e), 0, 1)),
            float(np.clip(max(hi, e), 0, 1)))


def mmp(r):
    """Mean max-probability (the estimate on main) with its sampling interval only."""
    c = _conf(r["pool"])
    e = c.mean()
    h = Z90 * np.sqrt((c * (1 - c)).sum()) / len(c)
    return _clip(e, e - h, e + h)


def main_interval(r):
    """What main computed before (commit c17b4a4): mean max-probability with its sampling
    interval, widened on one side by the last batch's gap ``accuracy - confidence``."""
    conf, ok = _oos(r, last=1)
    c = _conf(r["pool"])
    est, var, gap = c.mean(), (c * (1 - c)).sum() / c.size ** 2, 0.0
    if len(conf):
        d = ok - conf
        gap = d.mean()
        var += d.var(ddof=1) / d.size if d.size > 1 else 0.25
    half = Z90 * np.sqrt(var)
    return _clip(est, est + min(gap, 0) - half, est + max(gap, 0) + half)


def _logit(c):
    c = np.clip(c, 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def _temperature(p, y):
    """Temperature minimising the NLL of the out-of-sample answers (log-probs as logits)."""
    z = np.log(np.clip(p, 1e-12, 1))

    def nll(log_t):
        s = z / np.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return -(s[np.arange(len(y)), y] - np.log(np.exp(s).sum(1))).mean()

    return float(np.exp(optimize.minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def _scaled(p, t):
    z = np.log(np.clip(p, 1e-12, 1)) / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def temperature(r):
    """Mean max-probability after temperature scaling on the out-of-sample answers."""
    if len(r["oos_label"]) < 2:
        return mmp(r)
    t = _temperature(r["oos_proba"].astype(np.float64), r["oos_label"])
    c = _conf(_scaled(r["pool"].astype(np.float64), t))
    e = c.mean()
    h = Z90 * np.sqrt((c * (1 - c)).sum()) / len(c)
    return _clip(e, e - h, e + h)


def _atc_threshold(conf, ok):
    """ATC (Garg et al. 2022): the threshold t with mean(conf > t) = mean(ok)."""
    acc = ok.mean()
    return np.quantile(conf, 1 - acc) if 0 < acc < 1 else (-np.inf if acc >= 1 else np.inf)


def atc(r):
    """Average Thresholded Confidence, threshold fitted on the out-of-sample answers."""
    conf, ok = _oos(r)
    if len(conf) < 2:
        return mmp(r)
    t = _atc_threshold(conf, ok)
    e = float((_conf(r["pool"]) > t).mean())
    return _clip(e, e, e)


def doc(r):
    """Difference of Confidences: pool confidence minus the answers' confidence gap."""
    conf, ok = _oos(r)
    if not len(conf):
        return mmp(r)
    e = _conf(r["pool"]).mean() - (conf.mean() - ok.mean())
    return _clip(e, e, e)


def oos_raw(r):
    """Accuracy of the out-of-sample answers (no selection correction), Jeffreys interval."""
    conf, ok = _oos(r)
    if not len(conf):
        return mmp(r)
    k, n = ok.sum(), len(ok)
    lo, hi = stats.beta.ppf([0.05, 0.95], k + 0.5, n - k + 0.5)
    return _clip(k / n, lo, hi)


def _platt(conf, ok, prior=1.0, steps=25):
    """P(correct | confidence) = sigmoid(a * logit(conf) + b): MAP fit and its Hessian.

    The prior (a Gaussian of precision ``prior`` on ``(a - 1, b)``) pulls towards a
    calibrated model (``a = 1, b = 0``): with few answers the model's own confidence wins.
    Newton steps on the two parameters (a concave problem).
    """
    X = np.column_stack([_logit(conf), np.ones(len(conf))])
    w = np.array([1.0, 0.0])
    for _ in range(steps):
        q = 1 / (1 + np.exp(-X @ w))
        g = X.T @ (ok - q) - prior * (w - [1.0, 0.0])
        H = (X * (q * (1 - q))[:, None]).T @ X + prior * np.eye(2)
        step = np.linalg.solve(H, g)
        w = w + step
        if np.abs(step).max() < 1e-8:
            break
    q = 1 / (1 + np.exp(-X @ w))
    H = (X * (q * (1 - q))[:, None]).T @ X + prior * np.eye(2)
    return w, H


def platt(r, prior=1.0):
    """Platt-recalibrated mean confidence (selection corrected by conditioning on the
    confidence); interval: the fit's Laplace uncertainty (delta method) + pool sampling."""
    conf, ok = _oos(r)
    pc = _conf(r["pool"])
    if len(conf) < 2:
        return mmp(r)
    w, H = _platt(conf, ok.astype(float), prior)
    Xp = np.column_stack([_logit(pc), np.ones(len(pc))])
    q = 1 / (1 + np.exp(-Xp @ w))
    e = q.mean()
    grad = (Xp * (q * (1 - q))[:, None]).mean(0)
    sd = np.sqrt(grad @ np.linalg.solve(H, grad) + (q * (1 - q)).sum() / len(q) ** 2)
    return _clip(e, e - Z90 * sd, e + Z90 * sd)


def _session_kw(r):
    conf, ok = _oos(r)
    if not len(conf):
        return {}
    return dict(batch_confidence=conf, batch_correct=ok,
                batch_age=r["oos_round"].max() - r["oos_round"])


def chosen(r):
    """skpeal's :func:`~skpeal.stopping.accuracy_interval` as the session calls it: Platt
    on every out-of-sample answer so far, weighed ``0.6 ** age``, prior 1, applied to the
    previous round's model on the pool (lagged), the interval widened by the answers'
    overdispersion between batches (drift)."""
    from skpeal.stopping import accuracy_interval

    kw = _session_kw(r)
    if "prev_pool" in r:
        kw["previous_confidence"] = _conf(r["prev_pool"])
    return accuracy_interval(r["pool"].astype(np.float64), **kw)


def _skpeal(previous, dispersion):
    def f(r):
        from skpeal.stopping import accuracy_interval

        kw = _session_kw(r)
        if previous and "prev_pool" in r:
            kw["previous_confidence"] = _conf(r["prev_pool"])
        return accuracy_interval(r["pool"].astype(np.float64), dispersion=dispersion, **kw)
    return f


def _agree(a, b):
    """+1 where the two models predict the same class, -1 where not, 0 where b is unknown."""
    out = np.zeros(len(a))
    known = ~np.isnan(b).any(1)
    out[known] = np.where(a[known].argmax(1) == b[known].argmax(1), 1.0, -1.0)
    return out


def platt_agreement(r, decay=0.6, prior=1.0):
    """Platt with a second feature: whether the judging model agreed with the model of the
    round before it (agreement ~ correctness, as in GDE and Agreement-on-the-line); on the
    pool, the current model against the previous one. Prior precision ``prior`` on both
    extra coefficients' distance from (1, 0, 0)."""
    conf, ok = _oos(r)
    if len(conf) < 2 or "prev_pool" not in r:
        return mmp(r)
    pc = _conf(r["pool"])
    Xa = np.column_stack([_logit(conf), np.ones(len(conf)),
                          _agree(r["oos_proba"], r["oos_pprev"])])
    Xp = np.column_stack([_logit(pc), np.ones(len(pc)), _agree(r["pool"], r["prev_pool"])])
    w = decay ** (r["oos_round"].max() - r["oos_round"]).astype(float)
    b, centre = np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])
    for _ in range(50):
        q = 1 / (1 + np.exp(-Xa @ b))
        g = Xa.T @ (w * (ok - q)) - prior * (b - centre)
        H = (Xa * (w * q * (1 - q))[:, None]).T @ Xa + prior * np.eye(3)
        step = np.linalg.solve(H, g)
        b = b + step
        if np.abs(step).max() < 1e-8:
            break
    q = 1 / (1 + np.exp(-Xp @ b))
    e = q.mean()
    grad = (Xp * (q * (1 - q))[:, None]).mean(0)
    sd = np.sqrt(grad @ np.linalg.solve(H, grad) + (q * (1 - q)).sum() / len(q) ** 2)
    return _clip(e, e - Z90 * sd, e + Z90 * sd)


ESTIMATORS = {
    "chosen: lagged Platt + drift dispersion (skpeal)": chosen,
    "lagged Platt, binomial interval": _skpeal(previous=True, dispersion=False),
    "Platt decay 0.6 + drift dispersion": _skpeal(previous=False, dispersion=True),
    "before: Platt decay 0.6, binomial interval": _skpeal(previous=False, dispersion=False),
    "Platt + agreement with the previous model": platt_agreement,
    "main (mean max-prob + last-batch gap)": main_interval,
    "mean max-prob": mmp,
    "temperature-scaled max-prob": temperature,
    "ATC (max-prob)": atc,
    "DoC": doc,
    "out-of-sample accuracy (raw)": oos_raw,
    "Platt on out-of-sample answers, equal weights": platt,
}


# --------------------------------------------------------------------------- oracles
def oracles(records, seed=0):
    """What the truth says about the limits (not estimators: they read the pool's labels).

    Median absolute errors (points) over the linked rounds after the first:

    * ``previous map``: the previous model's exact Platt map (fitted on its whole pool with
      the truth) applied to the current model's confidences: the drift of the map;
    * ``previous accuracy``: the previous model's true accuracy on the current pool;
    * ``random n``: Platt (prior 1) fitted on the current model's answers on ``n`` random
      pool images (n = 10, 25, every label so far): no drift, no selection, only noise.
    """
    from scipy.special import expit

    from skpeal.stopping import _platt_fit

    rng = np.random.default_rng(seed)
    rows = []
    for r in records:
        if "prev_pool" not in r:
            continue
        prev_ok = r["pool_correct_prev"].astype(float)
        Xp = _logit(_conf(r["pool"]))
        w, _ = _platt_fit(_logit(_conf(r["prev_pool"])), prev_ok, np.ones(len(prev_ok)), 1e-6)
        row = {"set": r["set"], "previous map": expit(w[0] * Xp + w[1]).mean(),
               "previous accuracy": prev_ok.mean()}
        ok = r["pool_correct"].astype(float)
        for name, n in (("random 10", 10), ("random 25", 25), ("random all", r["n_labels"])):
            idx = rng.choice(len(ok), size=min(n, len(ok)), replace=False)
            w, _ = _platt_fit(Xp[idx], ok[idx], np.ones(len(idx)), 1.0)
            row[name] = expit(w[0] * Xp + w[1]).mean()
        rows.append({k: (100 * abs(v - r["true"]) if k != "set" else v) for k, v in row.items()})
    df = pd.DataFrame(rows)
    out = df.groupby("set").median().round(1)
    out.loc["all"] = df.drop(columns="set").median().round(1)
    return out


def stopping_replay(df, estimator):
    """Replay each run's rounds of ``estimator`` through ``EstimatedAccuracy`` variants.

    Per variant: the share of runs it stops, the median round of the first stop, and the
    median (and largest) pool accuracy still to gain between then and the last round
    (points). ``lower bound``: the plain plateau rule fed the interval's lower bound.
    """
    from skpeal.stopping import EstimatedAccuracy

    variants = {"plain plateau": ({}, "est"), "session (max_half_width=0.03)":
                ({"max_half_width": 0.03}, "est"), "max_half_width=0.25":
                ({"max_half_width": 0.25}, "est"), "lower bound plateau": ({}, "low")}
    rows = []
    for _, g in df[df.estimator == estimator].groupby(["set", "seed", "strategy"]):
        g = g.sort_values("round")
        for name, (kw, key) in variants.items():
            crit = EstimatedAccuracy(**kw)
            for r in g.itertuples():
                if key == "est":
                    crit.update(estimate=r.est, interval=(r.low, r.high))
                else:
                    crit.update(estimate=r.low)
            at = crit.stopped_at_
            rows.append({"criterion": name, "stops": at is not None,
                         "round": np.nan if at is None else g["round"].iloc[at],
                         "to gain": np.nan if at is None else
                         100 * (g.true.iloc[-1] - g.true.iloc[at])})
    out = pd.DataFrame(rows).groupby("criterion", sort=False).agg(
        runs_stopped=("stops", "mean"), median_round=("round", "median"),
        median_to_gain=("to gain", "median"), max_to_gain=("to gain", "max"))
    return out.round(2)


# --------------------------------------------------------------------------- report
def evaluate(records, estimators):
    rows = []
    for r in records:
        for name, f in estimators.items():
            e, lo, hi = f(r)
            rows.append(dict(set=r["set"], seed=r["seed"], strategy=r["strategy"],
                             round=r["round"], estimator=name, est=e, low=lo, high=hi,
                             true=r["true"]))
    df = pd.DataFrame(rows)
    df["err"] = 100 * (df.est - df.true).abs()
    df["bias"] = 100 * (df.est - df.true)
    df["cover"] = (df.low <= df.true + 1e-12) & (df.true <= df.high + 1e-12)
    df["width"] = 100 * (df.high - df.low)
    return df


def summary(df, choose_on=CHOOSE_ON):
    df = df.copy()
    df["part"] = np.where(df.set.isin(choose_on), "chosen on", "held out")
    lines = ["| estimator | sets | rounds | median abs. error (points) | median bias | "
             "interval covers the truth | median width (points) |",
             "|---|---|---|---|---|---|---|"]
    for est, g in df.groupby("estimator", sort=False):
        groups = [(s, h) for s, h in g.groupby("set")]
        groups += [(f"{p} ({', '.join(sorted(h.set.unique()))})", h) for p, h in g.groupby("part")]
        groups += [("all", g)]
        for s, h in groups:
            lines.append(f"| {est} | {s} | {len(h)} | {h.err.median():.1f} | "
                         f"{h.bias.median():+.1f} | {h.cover.mean():.0%} | "
                         f"{h.width.median():.1f} |")
    return "\n".join(lines)


def report(args):
    with open(args.cache, "rb") as fh:
        records = link(pickle.load(fh))
    if args.sets:
        records = [r for r in records if r["set"] in args.sets]
    if args.oracles:
        print(oracles(records).to_markdown())
        return None
    names = args.estimators or list(ESTIMATORS)
    df = evaluate(records, {n: ESTIMATORS[n] for n in names})
    n_runs = len(df[["set", "seed", "strategy"]].drop_duplicates())
    text = (f"Estimators compared and the session's one chosen on {' and '.join(args.choose_on)}"
            " only (rule fixed before the held-out results of these estimators were looked "
            "at: the lowest median error there, then the narrowest interval covering at "
            "least 85% of the rounds on each of them); the other sets "
            f"are held out and were not used to choose. {n_runs} simulated sessions "
            f"({', '.join(sorted(set(df.strategy)))}), one row per round "
            "after each refit; intervals are 90% nominal; errors and widths in accuracy "
            "points.\n\n" + summary(df, tuple(args.choose_on)) + "\n")
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    if args.rst:
        from lowbudget_eval import md_to_rst

        Path(args.rst).write_text(md_to_rst(text))
    if args.csv:
        df.to_csv(args.csv, index=False)
    if args.stopping:
        print(stopping_replay(df, names[0]).to_markdown())
    return df


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--runs", required=True)
    b.add_argument("--cache", required=True)
    r = sub.add_parser("report")
    r.add_argument("--cache", required=True)
    r.add_argument("--sets", nargs="*")
    r.add_argument("--choose-on", nargs="+", default=list(CHOOSE_ON))
    r.add_argument("--estimators", nargs="*")
    r.add_argument("--csv")
    r.add_argument("--stopping", action="store_true",
                   help="also replay the first estimator through EstimatedAccuracy variants")
    r.add_argument("--oracles", action="store_true",
                   help="print the limits measured with the truth (see oracles) and stop")
    r.add_argument("--md")
    r.add_argument("--rst")
    args = p.parse_args(argv)
    if args.cmd == "build":
        build(args.runs, args.cache)
    else:
        report(args)


if __name__ == "__main__":
    main()
