"""Default adapters against a linear probe at few labels, on the offline backbone.

Fashion-MNIST, ``--per-class`` labelled training images per class (drawn per seed), a
fixed set of ``--n-test`` test images, class names given, backbone ``effnet-lite0-minilm``.
For each configuration (a JSON object of :class:`skpeal.CLIPAdapterClassifier`
parameters; ``{"probe": true}`` is the standardised logistic regression on the frozen
image features) it prints the test accuracy over ``--seeds`` seeds as mean ± std.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/adapter_vs_probe.py \
        '{"probe": true}' '{}' '{"adapter": "lora"}'

``"_logit_scale"`` in a configuration replaces the offline backbone's logit scale (20)
for that configuration and the following ones (a probe, not an estimator parameter).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from skpeal import CLIPAdapterClassifier
from skpeal.datasets import load_fashion_mnist

MODEL = "effnet-lite0-minilm"


def _split(data, per_class, n_test, seed):
    rng = np.random.default_rng(seed)
    train = np.concatenate([
        rng.choice(np.flatnonzero(data.y_train == c), per_class, replace=False)
        for c in range(len(data.classnames))
    ])
    test = np.random.default_rng(12345).choice(len(data.y_test), n_test, replace=False)
    return train, test


def _probe(data, train, test, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = CLIPAdapterClassifier(model=MODEL, pretrained=None, max_epochs=0,
                                classes=list(range(10)), classnames=list(data.classnames))
    est.fit(data.X_train[train[:1]], None)
    ftr, fte = est.embed(data.X_train[train]), est.embed(data.X_test[test])
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    lr.fit(ftr, data.y_train[train])
    return float((lr.predict(fte) == data.y_test[test]).mean())


def _adapter(data, train, test, seed, params):
    params = dict(params)
    scale = params.pop("_logit_scale", None)
    if scale is not None:  # probe: another temperature for the offline backbone
        from skpeal.backbones import offline

        offline._LOGIT_SCALE = float(scale)
    est = CLIPAdapterClassifier(model=MODEL, pretrained=None, classes=list(range(10)),
                                classnames=list(data.classnames), random_state=seed, **params)
    est.fit(data.X_train[train], data.y_train[train])
    return float((est.predict(data.X_test[test]) == data.y_test[test]).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("configs", nargs="+", help="JSON objects of estimator parameters")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_fashion_mnist()
    for text in args.configs:
        cfg = json.loads(text)
        t0 = time.perf_counter()
        accs = []
        for seed in range(args.seeds):
            train, test = _split(data, args.per_class, args.n_test, seed)
            if cfg.get("probe"):
                accs.append(_probe(data, train, test, seed))
            else:
                accs.append(_adapter(data, train, test, seed, cfg))
        print(f"{np.mean(accs):.3f} ± {np.std(accs):.3f}  {[round(a, 3) for a in accs]}  "
              f"{time.perf_counter() - t0:6.1f}s  {text}", flush=True)


if __name__ == "__main__":
    main()
