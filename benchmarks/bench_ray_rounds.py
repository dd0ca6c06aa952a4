"""Benchmark: Ray scoring across rounds, and at scale with a feature store.

Prints a table of measured figures, each against its target:

R  fixed cost per query: ``--queries`` entropy queries, each with a newly fitted adapter
   (as in an active-learning round), over a small pool of in-memory images with one
   :class:`skpeal.distributed.RayPoolScorer`; the fixed cost of a query is its wall-clock
   minus the in-process scoring time of the same pool. Reported for the first query
   (actor start-up included) and the median of the later ones.    target <= 1 s later
S  scale (``--scale N1,N2``): an entropy query over N distinct paths (hard links to a
   few hundred PNG files: distinct paths and keys, so no store or cache shortcut
   applies) with a :class:`~skpeal.distributed.ParquetFeatureStore`, each size in a fresh
   driver process: first-round time (every image encoded), later-round time (features
   read from the store, a new adapter), driver peak RSS (``ru_maxrss``) and the bytes
   sent back to the driver per query; the RSS ratio of the largest to the smallest size
   is the figure.                                                  target <= 1.2x

``--cluster`` runs everything on a two-node cluster started here with ``ray start`` (a
head and a worker node, ``--cores`` CPUs each; see ``tests/distributed/cluster.py``)
instead of a local ``ray.init``.

Usage::

    python benchmarks/bench_ray_rounds.py --queries 4                # R on local Ray
    python benchmarks/bench_ray_rounds.py --only scale --scale 10000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 20
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.distributed.cluster


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
    from skpeal.distributed import RayPoolScorer
    from skpeal.strategies import entropy_sampling

    X, y = _digits(1797)
    pool = X[200:200 + args.pool]
    connect(args)
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
        rows.append({"ray_s": t_ray, "in_process_s": t_in, "fixed_s": t_ray - t_in,
                     "same": bool(np.array_equal(got[0], want[0])),
                     "n_actors": scorer.stats_["n_actors"],
                     "nodes": len(scorer.stats_.get("nodes", ()))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def scale_child(args):
    """In a fresh process: round 1 and round 2 over the paths of ``--child``."""
    import ray

    from skpeal.distributed import ParquetFeatureStore, RayPoolScorer
    from skpeal.strategies import entropy_sampling

    paths = Path(args.child).read_text().split("\n")
    X, y = _digits(1797)
    connect(args)
    scorer = RayPoolScorer(feature_store=ParquetFeatureStore(args.store))
    out = {"n": len(paths)}
    for r in (0, 1):
        clf = fitted(r, X, y)
        t = time.perf_counter()
        scorer.query(entropy_sampling, clf, paths, K, random_state=r)
        out[f"round{r + 1}_s"] = time.perf_counter() - t
        out[f"round{r + 1}_encoded"] = scorer.stats_["n_encoded"]
        # per block: idx, score, key (8 bytes each), pseudo label (8), n_encoded (8)
        out["bytes_to_driver"] = scorer.stats_["rows_returned"] * 5 * 8
        out["n_blocks"] = scorer.stats_["n_blocks"]
    scorer.close()
    ray.shutdown()
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def scale(args, tmp):
    from PIL import Image

    X, _ = _digits(1797)
    src = Path(tmp) / "src"
    src.mkdir()
    files = []
    for i in range(500):
        files.append(src / f"{i:03d}.png")
        Image.fromarray(X[i]).save(files[-1])
    links = Path(tmp) / "links"
    links.mkdir()
    out = {}
    made = 0
    for n in sorted(int(s) for s in args.scale.split(",")):
        for i in range(made, n):  # distinct paths, shared content: no shortcut by content
            os.link(files[i % len(files)], links / f"{i:07d}.png")
        made = max(made, n)
        pf = Path(tmp) / f"paths-{n}.txt"
        pf.write_text("\n".join(str(links / f"{i:07d}.png") for i in range(n)))
        cmd = [sys.executable, __file__, "--child", str(pf), "--store",
               str(Path(tmp) / f"store-{n}"), "--cores", str(args.cores)]
        if args.address:
            cmd += ["--address", args.address]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(res.stderr[-3000:])
        out[n] = json.loads(res.stdout.strip().splitlines()[-1])
        print(json.dumps(out[n]), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--pool", type=int, default=512)
    ap.add_argument("--scale", default="100000,1000000")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--only", choices=["rounds", "scale"], default=None)
    ap.add_argument("--address", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return scale_child(args)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}", flush=True)
    cluster = None
    if args.cluster:
        from tests.distributed.cluster import LocalCluster

        cluster = LocalCluster(n_workers=1, num_cpus=args.cores).start()
        args.address = cluster.address
    try:
        table = []
        if args.only in (None, "rounds"):
            r = rounds(args)
            later = float(np.median([x["fixed_s"] for x in r[1:]])) if len(r) > 1 else np.nan
            table.append((f"R  fixed cost per query, {args.pool} images, skpeal-tiny",
                          f"{later:.2f} s", "<= 1 s after the first",
                          f"first {r[0]['fixed_s']:.1f} s; query {r[0]['ray_s']:.1f} s then "
                          + ", ".join(f"{x['ray_s']:.2f}" for x in r[1:])
                          + f" s; in-process {r[-1]['in_process_s']:.2f} s; same selection: "
                          f"{all(x['same'] for x in r)}; nodes {r[-1]['nodes']}"))
            import ray

            ray.shutdown()
        if args.only in (None, "scale"):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
                s = scale(args, tmp)
            lo, hi = min(s), max(s)
            table.append((f"S  driver peak RSS, {hi} vs {lo} paths, feature store",
                          f"{s[hi]['peak_rss'] / s[lo]['peak_rss']:.2f}x", "<= 1.2x",
                          "; ".join(f"{n}: {v['peak_rss'] / 2**20:.0f} MiB, round 1 "
                                    f"{v['round1_s']:.0f} s, round 2 {v['round2_s']:.1f} s "
                                    f"({v['round2_encoded']} encoded), "
                                    f"{v['bytes_to_driver'] / 1024:.0f} KiB to the driver"
                                    for n, v in s.items())))
    finally:
        if cluster is not None:
            cluster.stop()
    print("\n| measure | figure | target | detail |\n|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
