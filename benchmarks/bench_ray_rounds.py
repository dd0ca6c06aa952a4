"""Benchmark: Ray scoring across rounds, and at scale with a feature store.

Prints a table of measured figures, each against its target:

R  fixed cost per query: ``--queries`` entropy queries, each with a newly fitted adapter
   (as in an active-learning round), over a small pool of in-memory images with one
   :class:`skpeal.distributed.RayPoolScorer`; the fixed cost of a query is its wall-clock
   minus the in-process scoring time of the same pool. Reported for the first query
   (actor start-up included) and the median of the later ones, twice in the same run:
   BEFORE, the old behaviour (actors created anew for every query: the benchmark calls
   ``scorer.close()`` after each query, so the next one starts new actors, imports torch
   and builds the backbone again), and AFTER (persistent actors). target <= 1 s later
S  scale (``--scale N1,N2``): an entropy query over N distinct paths (hard links to a
   few hundred PNG files: distinct paths and keys, so no store or cache shortcut
   applies) with a :class:`~skpeal.distributed.ParquetFeatureStore`, each size in a fresh
   driver process: first-round time (every image encoded), later-round time (features
   read from the store, a new adapter), driver peak RSS (``ru_maxrss``) and the bytes
   sent back to the driver per query; the RSS ratio of the largest to the smallest size
   is the figure.                                                  target <= 1.2x
   Each (size, round) runs in a fresh driver process, so both rounds' times include
   starting the actors; the later round then runs once more (a third adapter) with the
   actors kept, which is what a session's later rounds cost.
   Resumable: with ``--workdir DIR`` the links, the stores and every finished stage
   (size, round) are kept in DIR; a rerun skips finished stages (a killed round 1 is
   started again from an empty store, so a round-1 figure is always a whole first round).
   ``--rounds 2`` runs only the later round of a size whose store is complete.
O  the offline backbone ``effnet-lite0-minilm`` (an EfficientNet-Lite0 image tower and a
   MiniLM text tower: NOT a CLIP model) on ``--offline N`` distinct photo tiles (96x96
   crops of scikit-learn's two sample photos, each with its own tint: distinct content),
   prompt adapter, with a ``ParquetFeatureStore``: first round (every tile encoded) and
   later round (stored features, a new adapter; also with the actors kept, as in S).

The load average (other developers share the machine's cores) is printed with each figure.

``--cluster`` runs everything on a two-node cluster started here with ``ray start`` (a
head and a worker node, ``--cores`` CPUs each; see ``tests/distributed/cluster.py``)
instead of a local ``ray.init``.

Usage::

    python benchmarks/bench_ray_rounds.py --queries 4                # R on local Ray
    python benchmarks/bench_ray_rounds.py --only scale --scale 10000,100000 --workdir W
    python benchmarks/bench_ray_rounds.py --only offline --offline 20000 --workdir W
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 20
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.distributed.cluster


def load():
    """The 1-, 5- and 15-minute load averages, as printed next to every figure."""
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def _digits(n):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (np.kron(d.images, np.ones((4, 4))) * (255 / 16)).round().astype(np.uint8)
    return X[:n], d.target[:n]


def fitted(round_, X, y):
    """A tiny-model estimator fitted on a round's labelled set (a new adapter each round)."""
    from skpeal import CLIPAdapterClassifier

    n = 20 + 10 * round_
    return CLIPAdapterClassifier(model="skpeal-tiny", pretrained=None, n_ctx=4, max_epochs=1,
                                 random_state=round_, classes=list(range(10))
                                 ).fit(X[:n], y[:n])


def connect(args):
    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)


def rounds(args):
    """BEFORE (close() after every query: new actors each time) then AFTER (kept)."""
    from skpeal.distributed import RayPoolScorer
    from skpeal.strategies import entropy_sampling

    X, y = _digits(1797)
    pool = X[200:200 + args.pool]
    connect(args)
    out = {}
    for mode in ("before", "after"):
        scorer = RayPoolScorer()
        rows = []
        for r in range(args.queries):
            clf = fitted(r, X, y)
            t = time.perf_counter()
            want = entropy_sampling(clf, pool, K, random_state=r)
            t_in = time.perf_counter() - t
            t = time.perf_counter()
            got = scorer.query(entropy_sampling, clf, pool, K, random_state=r)
            t_ray = time.perf_counter() - t
            rows.append({"mode": mode, "query": r, "ray_s": t_ray, "in_process_s": t_in,
                         "fixed_s": t_ray - t_in,
                         "same": bool(np.array_equal(got[0], want[0])),
                         "n_actors": scorer.stats_["n_actors"],
                         "setup_s": scorer.stats_.get("setup_s"),
                         "nodes": len(scorer.stats_.get("nodes", ())), "load": load()})
            if mode == "before":
                scorer.close()  # the old behaviour: the next query starts new actors
            print(json.dumps(rows[-1]), flush=True)
        scorer.close()
        out[mode] = rows
    return out


def scale_child(args):
    """In a fresh process: round ``args.round`` over the paths of ``--child``."""
    import ray

    from skpeal.distributed import ParquetFeatureStore, RayPoolScorer
    from skpeal.strategies import entropy_sampling

    paths = Path(args.child).read_text().split("\n")
    X, y = _digits(1797)
    connect(args)
    scorer = RayPoolScorer(feature_store=ParquetFeatureStore(args.store))
    r = args.round - 1
    clf = fitted(r, X, y)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    scorer.query(entropy_sampling, clf, paths, K, random_state=r)
    out = {"n": len(paths), "round": args.round, "s": time.perf_counter() - t,
           "encoded": scorer.stats_["n_encoded"], "n_blocks": scorer.stats_["n_blocks"],
           "n_actors": scorer.stats_["n_actors"],
           "rows_to_driver": scorer.stats_["rows_returned"],
           "bytes_to_driver": scorer.stats_["bytes_returned"],
           "rss_before_query": rss0, "load": load()}
    if args.round >= 2:  # once more, with the actors this process started kept
        clf = fitted(r + 1, X, y)
        t = time.perf_counter()
        scorer.query(entropy_sampling, clf, paths, K, random_state=r + 1)
        out["s_kept_actors"] = time.perf_counter() - t
        out["encoded_kept_actors"] = scorer.stats_["n_encoded"]
    scorer.close()
    ray.shutdown()
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def _child(args, extra):
    cmd = [sys.executable, __file__, "--cores", str(args.cores), *extra]
    if args.address:
        cmd += ["--address", args.address]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _stage(work, name, run):
    """A finished stage's result from ``work`` (resumable), else run it and keep it."""
    done = Path(work) / f"{name}.json"
    if done.exists():
        res = json.loads(done.read_text())
        res["resumed"] = True
        return res
    res = run()
    done.write_text(json.dumps(res))
    return res


def scale(args, work):
    from PIL import Image

    X, _ = _digits(1797)
    src = Path(work) / "src"
    src.mkdir(exist_ok=True)
    files = []
    for i in range(500):
        files.append(src / f"{i:03d}.png")
        if not files[-1].exists():
            Image.fromarray(X[i]).save(files[-1])
    links = Path(work) / "links"
    links.mkdir(exist_ok=True)
    out = {}
    for n in sorted(int(s) for s in args.scale.split(",")):
        for i in range(n):  # distinct paths, shared content: no shortcut by content
            link = links / f"{i:07d}.png"
            if not link.exists():
                os.link(files[i % len(files)], link)
        pf = Path(work) / f"paths-{n}.txt"
        if not pf.exists():
            pf.write_text("\n".join(str(links / f"{i:07d}.png") for i in range(n)))
        store = Path(work) / f"store-{n}"
        out[n] = {}
        for rnd in args.rounds:
            def run(rnd=rnd, n=n, pf=pf, store=store):
                if rnd == 1:  # a whole first round: from an empty store
                    shutil.rmtree(store, ignore_errors=True)
                elif not (Path(work) / f"scale-{n}-round1.json").exists():
                    raise RuntimeError(f"round 2 at {n}: round 1 has not finished (its "
                                       "store is incomplete)")
                return _child(args, ["--child", str(pf), "--store", str(store),
                                     "--round", str(rnd)])

            out[n][rnd] = _stage(work, f"scale-{n}-round{rnd}", run)
            print(json.dumps(out[n][rnd]), flush=True)
    return out


def write_tiles(folder, n, seed=0):
    """``n`` distinct 96x96 JPEG tiles: crops of the two sample photos, each tinted.

    Returns the paths and each tile's source photo (0: china, 1: flower) as its label.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i in range(n):
        src = photos[i % 2]
        y, x = rng.integers(0, src.shape[0] - 96), rng.integers(0, src.shape[1] - 96)
        tint = rng.uniform(0.8, 1.2, size=3)
        p = folder / f"t{i:06d}.jpg"
        if not p.exists():
            tile = np.clip(src[y:y + 96, x:x + 96] * tint, 0, 255).astype(np.uint8)
            Image.fromarray(tile).save(p, quality=90)
        paths.append(str(p))
        labels.append(i % 2)
    return paths, np.array(labels)


def offline_child(args):
    """In a fresh process: round ``args.round`` of the offline backbone over the tiles."""
    import ray

    from skpeal import CLIPAdapterClassifier
    from skpeal.distributed import ParquetFeatureStore, RayPoolScorer
    from skpeal.strategies import entropy_sampling

    paths, labels = write_tiles(Path(args.child), args.offline)
    connect(args)
    scorer = RayPoolScorer(feature_store=ParquetFeatureStore(args.store))
    r = args.round - 1
    n_lab = 20 + 10 * r
    t = time.perf_counter()
    clf = CLIPAdapterClassifier(model="effnet-lite0-minilm", n_ctx=4, max_epochs=5,
                                classes=[0, 1], classnames=["temple", "flower"],
                                random_state=r).fit(paths[:n_lab], labels[:n_lab])
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    scorer.query(entropy_sampling, clf, paths, K, random_state=r)
    out = {"n": len(paths), "round": args.round, "s": time.perf_counter() - t,
           "fit_s": fit_s, "encoded": scorer.stats_["n_encoded"],
           "n_actors": scorer.stats_["n_actors"],
           "bytes_to_driver": scorer.stats_["bytes_returned"], "load": load()}
    if args.round >= 2:  # once more, with the actors this process started kept
        clf = CLIPAdapterClassifier(model="effnet-lite0-minilm", n_ctx=4, max_epochs=5,
                                    classes=[0, 1], classnames=["temple", "flower"],
                                    random_state=r + 1).fit(paths[:n_lab + 10],
                                                            labels[:n_lab + 10])
        t = time.perf_counter()
        scorer.query(entropy_sampling, clf, paths, K, random_state=r + 1)
        out["s_kept_actors"] = time.perf_counter() - t
        out["encoded_kept_actors"] = scorer.stats_["n_encoded"]
    scorer.close()
    ray.shutdown()
    print(json.dumps(out))


def offline(args, work):
    tiles = Path(work) / f"tiles-{args.offline}"
    paths, _ = write_tiles(tiles, args.offline)  # made once, before any timing
    from skpeal.distributed import content_keys

    assert len({bytes(k) for k in content_keys(paths)}) == len(paths)
    store = Path(work) / f"offline-store-{args.offline}"
    out = {}
    for rnd in args.rounds:
        def run(rnd=rnd):
            if rnd == 1:
                shutil.rmtree(store, ignore_errors=True)
            return _child(args, ["--child", str(tiles), "--store", str(store), "--round",
                                 str(rnd), "--offline", str(args.offline), "--mode",
                                 "offline"])

        out[rnd] = _stage(work, f"offline-{args.offline}-round{rnd}", run)
        print(json.dumps(out[rnd]), flush=True)
    return out


def _rounds_row(args, r):
    def fmt(rows):
        later = float(np.median([x["fixed_s"] for x in rows[1:]])) if len(rows) > 1 \
            else float("nan")
        return later, (f"first {rows[0]['fixed_s']:.1f} s (query {rows[0]['ray_s']:.1f} s), "
                       "later queries " + ", ".join(f"{x['ray_s']:.2f}" for x in rows[1:])
                       + " s")

    before, b_txt = fmt(r["before"])
    after, a_txt = fmt(r["after"])
    rows = r["before"] + r["after"]
    return (f"R  fixed cost per query, {args.pool} images, skpeal-tiny",
            f"{after:.2f} s after (was {before:.1f} s)", "<= 1 s after the first",
            f"BEFORE (new actors each query): {b_txt}; AFTER (kept actors): {a_txt}; "
            f"in-process scoring {rows[-1]['in_process_s']:.2f} s; same selection as "
            f"in-process: {all(x['same'] for x in rows)}; {rows[-1]['n_actors']} actors, "
            f"{rows[-1]['nodes']} node(s); {rows[-1]['load']}")


def _scale_rows(s):
    sizes = sorted(s)
    lo, hi = sizes[0], sizes[-1]
    rows = []
    detail = []
    for n in sizes:
        parts = [f"{n:,} paths:"]
        for rnd, v in sorted(s[n].items()):
            kept = (f", then {v['s_kept_actors']:.1f} s with the actors kept "
                    f"({v['encoded_kept_actors']} encoded)" if "s_kept_actors" in v else "")
            parts.append(f"round {rnd} {v['s']:.0f} s{kept} ({v['encoded']:,} encoded, "
                         f"{v['n_blocks']} blocks, {v['bytes_to_driver'] / 1024:.0f} KiB "
                         f"to the driver, peak RSS {v['peak_rss'] / 2**20:.0f} MiB, "
                         f"{v['load']})")
        detail.append(" ".join(parts))
    rss = {n: max(v["peak_rss"] for v in s[n].values()) for n in sizes}
    if lo != hi:
        rows.append((f"S  driver peak RSS, {hi:,} vs {lo:,} paths, feature store",
                     f"{rss[hi] / rss[lo]:.2f}x", "<= 1.2x", "; ".join(detail)))
    else:
        rows.append((f"S  {lo:,} paths", "-", "-", "; ".join(detail)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--pool", type=int, default=512)
    ap.add_argument("--scale", default="100000,1000000")
    ap.add_argument("--offline", type=int, default=20000)
    ap.add_argument("--rounds", default="1,2",
                    help="rounds of S and O to run (1: first, 2: later; default both)")
    ap.add_argument("--workdir", default=None,
                    help="keep links, stores and finished stages here (resumable)")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--only", choices=["rounds", "scale", "offline"], default=None)
    ap.add_argument("--address", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="scale", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.rounds = [int(x) for x in str(args.rounds).split(",")]
    if args.child:
        return offline_child(args) if args.mode == "offline" else scale_child(args)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores "
          f"({len(os.sched_getaffinity(0))} usable, shared), no GPU used, python "
          f"{platform.python_version()}; {load()}", flush=True)
    cluster = None
    if args.cluster:
        from tests.distributed.cluster import LocalCluster

        cluster = LocalCluster(n_workers=1, num_cpus=args.cores).start()
        args.address = cluster.address
    table = []
    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP"))
        work = tmp.name
    Path(work).mkdir(parents=True, exist_ok=True)
    try:
        if args.only in (None, "rounds"):
            table.append(_rounds_row(args, rounds(args)))
            import ray

            ray.shutdown()
        if args.only in (None, "scale"):
            table += _scale_rows(scale(args, work))
        if args.only in (None, "offline"):
            o = offline(args, work)
            table.append((f"O  effnet-lite0-minilm (not CLIP), {args.offline:,} distinct "
                          "tiles, feature store",
                          ", ".join(f"round {r} {v['s']:.0f} s" + (
                              f" ({v['s_kept_actors']:.1f} s with the actors kept)"
                              if "s_kept_actors" in v else "") for r, v in sorted(o.items())),
                          "-",
                          "; ".join(f"round {r}: {v['encoded']:,} encoded, fit "
                                    f"{v['fit_s']:.0f} s, {v['n_actors']} actors, "
                                    f"{v['bytes_to_driver'] / 1024:.0f} KiB to the driver, "
                                    f"{v['load']}" for r, v in sorted(o.items()))))
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            tmp.cleanup()
    print("\n| measure | figure | target | detail |\n|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
