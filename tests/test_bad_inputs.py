"""Bad inputs, as a careless or hostile user would try them, across the public API and CLI.

Every case asserts the exception type (or, for the command line, exit status 2 and one
``skpeal: error:`` line, never a traceback) *and* that the message names the problem.
The case ids start with their area (``params``, ``data``, ``images``, ``strategies``,
``metrics``, ``losses``, ``datasets``, ``adapter``, ``cli``, ``state``), so
``pytest --collect-only -q tests/test_bad_inputs.py`` counts them by area.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.exceptions import NotFittedError

from skpeal import CLIPAdapterClassifier, losses, metrics, strategies
from skpeal.cli import main
from skpeal.datasets import load_digits_images, load_fashion_mnist, load_image_folder
from tests.conftest import TINY


def _xf(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


def _case(area, name, fn, exc, match, xfail=None):
    return pytest.param(fn, exc, match, id=f"{area}:{name}", marks=[_xf(xfail)] if xfail else [])


_RNG = np.random.default_rng(0)
X40 = _RNG.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
Y40 = np.array(["cat", "dog", "bird", "cat"] * 10)


def _fit(X=X40, y=Y40, **params):
    return CLIPAdapterClassifier(**{**TINY, "max_epochs": 1, **params}).fit(X, y)


# ------------------------------------------------------------------ estimator params
_PARAMS = [
    # (name, params, message)
    ("adapter-unknown", dict(adapter="foo"), "adapter"),
    ("adapter-none", dict(adapter=None), "adapter"),
    ("calibration-unknown", dict(calibration="tanh"), "calibration"),
    ("calibration-int", dict(calibration=1), "calibration"),
    ("optimizer-unknown", dict(optimizer="adam"), "optimizer"),
    ("precision-unknown", dict(precision="fp8"), "precision"),
    ("lora_towers-unknown", dict(lora_towers="image"), "lora_towers"),
    ("n_ctx-zero", dict(n_ctx=0), "n_ctx"),
    ("n_ctx-float", dict(n_ctx=2.5), "n_ctx"),
    ("n_ctx-bool", dict(n_ctx=True), "n_ctx"),
    ("n_ctx-str", dict(n_ctx="4"), "n_ctx"),
    ("lora_r-zero", dict(lora_r=0), "lora_r"),
    ("max_epochs-negative", dict(max_epochs=-1), "max_epochs"),
    ("max_epochs-float", dict(max_epochs=1.5), "max_epochs"),
    ("batch_size-zero", dict(batch_size=0), "batch_size"),
    ("warmup_epochs-negative", dict(warmup_epochs=-1), "warmup_epochs"),
    ("verbose-negative", dict(verbose=-1), "verbose"),
    ("augment_views-zero", dict(augment_views=0), "augment_views"),
    ("augment_scale-number", dict(augment_scale=0.5), "augment_scale must be a pair"),
    ("augment_scale-three", dict(augment_scale=(0.1, 0.5, 1.0)), "augment_scale must be a pair"),
    ("augment_scale-zero", dict(augment_scale=(0.0, 1.0)), "augment_scale"),
    ("augment_scale-above-one", dict(augment_scale=(0.5, 1.5)), "augment_scale"),
    ("augment_scale-reversed", dict(augment_scale=(0.9, 0.2)), "low <= high"),
    ("num_workers-negative", dict(num_workers=-1), "num_workers"),
    ("predict_batch_size-zero", dict(predict_batch_size=0), "predict_batch_size"),
    ("predict_batch_size-str", dict(predict_batch_size="big"), "predict_batch_size"),
    ("predict_batch_size-bool", dict(predict_batch_size=True), "predict_batch_size"),
    ("feature_cache-str", dict(feature_cache="yes"), "feature_cache"),
    ("lr-zero", dict(lr=0), "lr"),
    ("lr-negative", dict(lr=-1), "lr"),
    ("lr-nan", dict(lr=float("nan")), "lr"),
    ("lr-inf", dict(lr=float("inf")), "lr"),
    ("lr-str", dict(lr="0.1"), "lr"),
    ("weight_decay-negative", dict(weight_decay=-1.0), "weight_decay"),
    ("lora_alpha-zero", dict(lora_alpha=0), "lora_alpha"),
    ("lora_dropout-one", dict(lora_dropout=1.0), "lora_dropout"),
    ("lora_dropout-negative", dict(lora_dropout=-0.1), "lora_dropout"),
    ("calibration_weight-negative", dict(calibration_weight=-1.0), "calibration_weight"),
    ("calibration_weight-nan", dict(calibration_weight=float("nan")), "calibration_weight"),
    ("calibration_warmup-one", dict(calibration_warmup=1.0), "calibration_warmup"),
    ("warm_start-str", dict(warm_start="yes"), "warm_start"),
    ("augment-int", dict(augment=1), "augment"),
    ("class_specific-str", dict(class_specific="no"), "class_specific"),
    ("ctx_init-empty", dict(ctx_init="  "), "ctx_init"),
    ("ctx_init-int", dict(ctx_init=3), "ctx_init"),
    ("templates-no-placeholder", dict(templates=["no placeholder"]), "templates"),
    ("templates-empty", dict(templates=[]), "templates"),
    ("templates-two-placeholders", dict(templates=["{} and {}"]), "templates"),
    ("templates-int", dict(templates=[3]), "templates"),
    ("device-unknown", dict(device="tpu"), "device"),
    ("device-int", dict(device=3), "device"),
    ("device-cuda-absent", dict(device="cuda:7"), "cuda"),
    ("random_state-str", dict(random_state="x"), "random_state"),
    ("random_state-float", dict(random_state=1.5), "random_state"),
    ("classes-empty", dict(classes=[]), "classes"),
    ("classes-duplicate", dict(classes=["cat", "dog", "bird", "cat"]), "duplicate"),
    ("classes-2d", dict(classes=[["cat", "dog"], ["bird", "x"]]), "classes"),
    ("classes-missing-label", dict(classes=["cat", "dog"]), "not in classes"),
    ("classnames-wrong-length", dict(classnames=["x"]), "classnames"),
    ("classnames-missing-key", dict(classnames={"cat": "a cat"}), "classnames"),
    ("lora_targets-no-match", dict(adapter="lora", lora_targets=["nothing_matches_this"]),
     "nothing_matches_this"),
]
PARAM_CASES = [
    _case("params", name, lambda ctx, tmp, p=p: _fit(**p), ValueError, match)
    for name, p, match in _PARAMS
]
if torch.cuda.is_available():  # the case only means something without CUDA
    PARAM_CASES = [c for c in PARAM_CASES if "cuda-absent" not in c.id]


# ------------------------------------------------------------------ fit / predict data
def _fit_with(X, y=None, **kw):
    def fn(ctx, tmp):
        yy = Y40[: len(X)] if y is None else y
        return _fit(X, yy, **kw)

    return fn


def _pred(method, X):
    return lambda ctx, tmp: getattr(ctx.fitted, method)(X)


def _dir_in_paths(ctx, tmp):
    p = tmp / "a.png"
    Image.fromarray(X40[0]).save(p)
    (tmp / "folder.png").mkdir()
    return _fit([str(p), str(tmp / "folder.png")], ["a", "b"])


DATA_CASES = [
    _case("data", "y-length", _fit_with(X40, Y40[:-1]), ValueError, "40 images but y has 39"),
    _case("data", "X-empty", _fit_with(X40[:0], Y40[:0]), ValueError, "empty"),
    _case("data", "y-single-class", _fit_with(X40[:3], np.array(["a", "a", "a"])), ValueError,
          r"single class \('a'\)"),
    _case("data", "y-single-class-int", _fit_with(X40[:3], np.zeros(3, dtype=np.int64)),
          ValueError, r"single class \(0\)"),
    _case("data", "y-continuous", _fit_with(X40, np.linspace(0, 1, 40)), ValueError,
          "Unknown label type"),
    _case("data", "y-2d", _fit_with(X40, np.zeros((40, 2))), ValueError, "shape"),
    _case("data", "X-5d", _fit_with(X40[:, :, :, :, None]), ValueError, "shape"),
    _case("data", "X-2-channels", _fit_with(X40[..., :2]), ValueError, "channels"),
    _case("data", "X-1d-numbers", _fit_with(np.arange(40)), ValueError, "shape"),
    _case("data", "X-single-path", _fit_with("a.png", Y40), TypeError, "single str"),
    _case("data", "X-int", _fit_with(3, Y40), TypeError, "got int"),
    _case("data", "X-list-of-objects", _fit_with([object(), object()], ["a", "b"]), TypeError,
          r"X\[0\] is a object"),
    _case("data", "X-missing-file", _fit_with(["/no/such/file.png"] * 2, ["a", "b"]),
          ValueError, "does not exist"),
    _case("data", "X-directory-among-paths", _dir_in_paths, ValueError, "is a folder"),
    _case("data", "X-tensor-5d", _fit_with(torch.zeros(2, 3, 8, 8, 1), ["a", "b"]), ValueError,
          "shape"),
    _case("data", "X-object-2d", _fit_with(np.empty((2, 2), dtype=object), ["a", "b"]),
          ValueError, "1-D"),
    _case("data", "y-none-trained", lambda ctx, tmp: CLIPAdapterClassifier(**TINY).fit(X40),
          ValueError, "y is None"),
    _case("data", "predict-unfitted", lambda ctx, tmp: CLIPAdapterClassifier(**TINY).predict(X40),
          NotFittedError, "not fitted"),
    _case("data", "predict-nan", _pred("predict", np.full((2, 8, 8), np.nan)), ValueError, "NaN"),
    _case("data", "predict_proba-empty", _pred("predict_proba", X40[:0]), ValueError, "empty"),
    _case("data", "embed-wrong-rank", _pred("embed", X40[0, 0]), ValueError, "shape"),
]


# ------------------------------------------------------------------ images (arrays, PIL, files)
def _check(X):
    from skpeal.images import check_images

    def fn(ctx, tmp):
        src = check_images(X)
        return src.batch(np.arange(len(src)), _PRE)

    return fn


def _file(save, name="img.tif"):
    """An image file written by ``save(path)``, then read through fit."""

    def fn(ctx, tmp):
        p = tmp / name
        save(p)
        return _fit([str(p), str(p)], ["a", "b"])

    return fn


def _save_array(a, **kw):
    return lambda p: Image.fromarray(a, **kw).save(p)


class _Pre:  # the identity preprocessing of a 32 px model, without importing private code
    image_size = 32

    def __call__(self, t):
        return t


_PRE = _Pre()

IMAGE_CASES = [
    _case("images", "bool-array", _check(np.zeros((2, 8, 8), dtype=bool)), TypeError, "boolean"),
    _case("images", "complex-array", _check(np.zeros((2, 8, 8), dtype=np.complex64)),
          TypeError, "complex"),
    _case("images", "float-above-1", _check(np.full((2, 8, 8), 3.0)), ValueError, r"\[0, 1\]"),
    _case("images", "float-negative", _check(np.full((2, 8, 8), -0.5, np.float32)), ValueError,
          r"\[0, 1\]"),
    _case("images", "float-nan", _check(np.full((2, 8, 8), np.nan)), ValueError, "NaN"),
    _case("images", "float-inf", _check(np.full((2, 8, 8), np.inf)), ValueError, "infinite"),
    _case("images", "float16-nan", _check(np.full((2, 8, 8), np.nan, np.float16)), ValueError,
          "NaN"),
    _case("images", "int64-negative", _check(np.full((2, 8, 8), -1, np.int64)), ValueError,
          r"\[0, 255\]"),
    _case("images", "int16-above-255", _check(np.full((2, 8, 8), 300, np.int16)), ValueError,
          r"\[0, 255\]"),
    _case("images", "int8-negative", _check(np.full((2, 8, 8), -3, np.int8)), ValueError,
          r"\[0, 255\]"),
    _case("images", "zero-size-array", _check(np.zeros((2, 0, 0), np.uint8)), ValueError,
          "empty image"),
    _case("images", "zero-width-array", _check(np.zeros((2, 8, 0, 3), np.uint8)), ValueError,
          "empty image"),
    _case("images", "zero-size-pil", _check([Image.new("RGB", (0, 0))]), ValueError,
          "empty image"),
    _case("images", "zero-size-item-array", _check([np.zeros((0, 5), np.uint8)]), ValueError,
          "empty image"),
    _case("images", "tensor-bool", _check(torch.zeros(2, 3, 8, 8, dtype=torch.bool)), TypeError,
          "boolean"),
    _case("images", "tensor-float-above-1", _check(torch.full((2, 3, 8, 8), 2.0)), ValueError,
          r"\[0, 1\]"),
    _case("images", "F-tiff-above-1",
          _file(_save_array(np.full((8, 8), 7.5, np.float32))), ValueError, "img.tif"),
    _case("images", "F-tiff-nan",
          _file(_save_array(np.full((8, 8), np.nan, np.float32))), ValueError, "NaN"),
    _case("images", "I-tiff-negative",
          _file(_save_array(np.full((8, 8), -5, np.int32))), ValueError, "negative"),
    _case("images", "F-pil-above-1",
          _check([Image.fromarray(np.full((8, 8), 2.0, np.float32))]), ValueError, r"\[0, 1\]"),
    _case("images", "truncated-png",
          _file(lambda p: p.write_bytes(_png_bytes()[:60]), "cut.png"), ValueError, "cut.png"),
    _case("images", "not-an-image", _file(lambda p: p.write_bytes(b"GIF89a nonsense"),
                                          "fake.gif"), ValueError, "fake.gif"),
]


def _png_bytes():
    import io

    buf = io.BytesIO()
    Image.fromarray(X40[0]).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ strategies
class _Fake:
    """A fitted-looking classifier: fixed probabilities, features = given embeddings."""

    def __init__(self, proba, feats=None):
        self.proba, self.feats = np.asarray(proba, float), feats
        self.classes_ = np.arange(self.proba.shape[1])

    def predict_proba(self, X):
        return self.proba[np.asarray(X, dtype=int).ravel()]

    def embed(self, X):
        return self.feats[np.asarray(X, dtype=int).ravel()]


_P = np.full((6, 3), 1 / 3)
_POOL = np.arange(6)


def _q(fn, *a, **kw):
    return lambda ctx, tmp: fn(*a, **kw)


def _negative_foreign(classifier, X, n, **kw):
    return np.array([-1, 0, 1, 2][:max(n, 2)]), np.ones(max(n, 2))


def _nan_feats():
    f = np.ones((6, 4))
    f[2] = np.nan
    return f


STRATEGY_CASES = [
    _case("strategies", "proba-1d", _q(strategies.check_proba, np.ones(3)), ValueError, "2-D"),
    _case("strategies", "proba-nan", _q(strategies.check_proba, np.full((2, 2), np.nan)),
          ValueError, "NaN"),
    _case("strategies", "proba-negative", _q(strategies.check_proba, [[-0.5, 1.5]]), ValueError,
          r"\[0, 1\]"),
    _case("strategies", "proba-row-sum", _q(strategies.check_proba, [[0.2, 0.2]]), ValueError,
          "sum to 1"),
    _case("strategies", "proba-no-columns", _q(strategies.check_proba, np.ones((2, 0))),
          ValueError, "column"),
    _case("strategies", "entropy-scores-3d", _q(strategies.entropy_scores, np.ones((2, 2, 2))),
          ValueError, "2-D"),
    _case("strategies", "n_instances-zero",
          _q(strategies.entropy_sampling, _Fake(_P), _POOL, 0), ValueError, "n_instances"),
    _case("strategies", "n_instances-above-pool",
          _q(strategies.entropy_sampling, _Fake(_P), _POOL, 7), ValueError, "n_instances"),
    _case("strategies", "n_instances-float",
          _q(strategies.margin_sampling, _Fake(_P), _POOL, 1.5), ValueError, "n_instances"),
    _case("strategies", "n_instances-bool",
          _q(strategies.random_sampling, _Fake(_P), _POOL, True), ValueError, "n_instances"),
    _case("strategies", "pool-empty",
          _q(strategies.entropy_sampling, _Fake(_P), _POOL[:0], 1), ValueError, "empty"),
    _case("strategies", "random_state-str",
          _q(strategies.entropy_sampling, _Fake(_P), _POOL, 1, random_state="x"), ValueError,
          "random_state"),
    _case("strategies", "gamma-zero", _q(strategies.class_balanced, strategies.entropy_sampling,
                                         0), ValueError, "gamma"),
    _case("strategies", "gamma-above-1",
          _q(strategies.class_balanced, strategies.entropy_sampling, 1.5), ValueError, "gamma"),
    _case("strategies", "gamma-str",
          _q(strategies.class_balanced, strategies.entropy_sampling, "0.1"), ValueError, "gamma"),
    _case("strategies", "balanced-not-callable", _q(strategies.class_balanced, "entropy"),
          ValueError, "callable"),
    _case("strategies", "balanced-foreign-negative-index",
          _q(lambda: strategies.class_balanced(_negative_foreign, 1.0)(_Fake(_P), _POOL, 2)),
          ValueError, "-1"),
    _case("strategies", "coreset-no-labelled",
          _q(strategies.coreset_sampling, _Fake(_P, np.ones((6, 4))), _POOL, 1), ValueError,
          "labelled|labeled"),
    _case("strategies", "coreset-nan-embedding",
          _q(strategies.coreset_sampling, _Fake(_P, _nan_feats()), _POOL, 2,
             X_labeled=np.array([0])), ValueError, "NaN"),
    _case("strategies", "featdist-nan-embedding",
          _q(strategies.featdist_sampling, _Fake(_P, _nan_feats()), _POOL, 2,
             X_labeled=np.array([0]), y_labeled=np.array([0])), ValueError, "NaN"),
    _case("strategies", "featdist-unknown-label",
          _q(strategies.featdist_sampling, _Fake(_P, np.ones((6, 4))), _POOL, 1,
             X_labeled=np.array([0]), y_labeled=np.array([9])), ValueError, "9"),
    _case("strategies", "proba-rows-mismatch",
          _q(strategies.badge_sampling, _Fake(_P, np.ones((6, 4))), np.arange(12), 1),
          (ValueError, IndexError), "rows|index"),
]


# ------------------------------------------------------------------ metrics
_y3 = np.array([0, 1, 2])
_p3 = np.eye(3)

METRIC_CASES = [
    _case("metrics", "ece-length", _q(metrics.expected_calibration_error, _y3[:2], _p3),
          ValueError, "2|3"),
    _case("metrics", "ece-row-sum", _q(metrics.expected_calibration_error, _y3, _p3 * 0.5),
          ValueError, "sum"),
    _case("metrics", "ece-nan", _q(metrics.expected_calibration_error, _y3, _p3 * np.nan),
          ValueError, "finite"),
    _case("metrics", "ece-n_bins-zero",
          _q(metrics.expected_calibration_error, _y3, _p3, n_bins=0), ValueError, "n_bins"),
    _case("metrics", "ece-n_bins-float",
          _q(metrics.expected_calibration_error, _y3, _p3, n_bins=1.5), TypeError, "n_bins"),
    _case("metrics", "ece-empty", _q(metrics.expected_calibration_error, _y3[:0], _p3[:0]),
          ValueError, "empty|row"),
    _case("metrics", "reliability-duplicate-classes",
          _q(metrics.reliability_curve, _y3, _p3, classes=[0, 0, 1]), ValueError, "duplicate"),
    _case("metrics", "reliability-label-out-of-range",
          _q(metrics.reliability_curve, np.array([0, 1, 5]), _p3), ValueError, "5"),
    _case("metrics", "auroc-length", _q(metrics.error_detection_auroc, _y3, _y3[:2], _y3),
          ValueError, "length|same|2"),
    _case("metrics", "auroc-nan-score",
          _q(metrics.error_detection_auroc, _y3, _y3, np.array([0.1, np.nan, 0.2])), ValueError,
          "finite"),
    _case("metrics", "aulc-length", _q(metrics.area_under_learning_curve, [1, 2, 3], [0.5, 0.6]),
          ValueError, "length|same"),
    _case("metrics", "aulc-nan",
          _q(metrics.area_under_learning_curve, [1, 2], [0.5, np.nan]), ValueError, "finite"),
]


# ------------------------------------------------------------------ losses
_L = torch.zeros(3, 4)

LOSS_CASES = [
    _case("losses", "logits-1d", _q(losses.calibration_loss, torch.zeros(3), torch.zeros(3)),
          ValueError, "2-D"),
    _case("losses", "target-shape", _q(losses.calibration_loss, _L, torch.zeros(2).long()),
          ValueError, "target"),
    _case("losses", "mode-unknown", _q(losses.calibration_loss, _L, torch.zeros(3).long(), "x"),
          ValueError, "mode"),
    _case("losses", "target-float", _q(losses.calibration_loss, _L, torch.tensor([0.5, 1., 2.])),
          (TypeError, ValueError), "integer"),
    _case("losses", "target-out-of-range",
          _q(losses.calibration_loss, _L, torch.tensor([0, 1, 4])), ValueError, r"\[0, 4\)"),
    _case("losses", "target-negative",
          _q(losses.calibration_loss, _L, torch.tensor([0, -1, 2])), ValueError, r"\[0, 4\)"),
    _case("losses", "warmup-above-1", _q(losses.calibration_weight_at, 0.5, 1.0, 1.5),
          ValueError, "calibration_warmup"),
    _case("losses", "beta-one", _q(losses.group_weights, 2, 2, "effective", 1.0), ValueError,
          "beta"),
    _case("losses", "group-mode-unknown", _q(losses.group_weights, 2, 2, "x"), ValueError,
          "mode"),
]


# ------------------------------------------------------------------ datasets
def _folder(tmp, spec, root="imgs"):
    """Create class folders: spec maps 'cls' or 'train/cls' to a number of PNGs."""
    r = tmp / root
    for cls, n in spec.items():
        (r / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(X40[i]).save(r / cls / f"{i}.png")
    return r


def _ds(fn):
    return lambda ctx, tmp: fn(tmp)


DATASET_CASES = [
    _case("datasets", "folder-path-int", _ds(lambda t: load_image_folder(3)), TypeError, "path"),
    _case("datasets", "folder-missing", _ds(lambda t: load_image_folder(t / "nope")),
          ValueError, "not a folder"),
    _case("datasets", "folder-no-classes", _ds(lambda t: load_image_folder(t)), ValueError,
          "no class sub-folders"),
    _case("datasets", "folder-empty-class", _ds(lambda t: (
        _folder(t, {"a": 2}), (t / "imgs" / "b").mkdir(), load_image_folder(t / "imgs"))),
        ValueError, "'b'"),
    _case("datasets", "folder-unreadable", _ds(lambda t: (
        _folder(t, {"a": 2, "b": 2}), (t / "imgs" / "a" / "x.png").write_bytes(b"no"),
        load_image_folder(t / "imgs"))), ValueError, "x.png"),
    _case("datasets", "folder-train-without-test",
          _ds(lambda t: load_image_folder(_folder(t, {"train/a": 2, "train/b": 2}))),
          ValueError, "no test/"),
    _case("datasets", "folder-test-class-not-in-train",
          _ds(lambda t: load_image_folder(_folder(t, {"train/a": 2, "train/b": 2, "test/a": 1,
                                                       "test/c": 1}))), ValueError, "'c'"),
    _case("datasets", "folder-test_size-zero",
          _ds(lambda t: load_image_folder(_folder(t, {"a": 2, "b": 2}), test_size=0)),
          ValueError, "test_size"),
    _case("datasets", "folder-one-class",
          _ds(lambda t: load_image_folder(_folder(t, {"only": 4}))), ValueError,
          "single class 'only'"),
    _case("datasets", "folder-empty-test-split",
          _ds(lambda t: load_image_folder(_folder(t, {"a": 1, "b": 1}))), ValueError,
          "test split"),
    _case("datasets", "digits-test_size", _ds(lambda t: load_digits_images(test_size=2)),
          ValueError, "test_size"),
    _case("datasets", "fmnist-data_home-type", _ds(lambda t: load_fashion_mnist(data_home=3)),
          TypeError, "data_home"),
    _case("datasets", "fmnist-data_home-missing",
          _ds(lambda t: load_fashion_mnist(data_home=t)), FileNotFoundError, "data_home"),
    _case("datasets", "fmnist-n_train-zero",
          _ds(lambda t: load_fashion_mnist(n_train=0)), (ValueError, FileNotFoundError),
          "n_train|dataset-fashion-mnist"),
]


@pytest.mark.parametrize("kind", ["loop", "other-class", "outside", "class-folder-out"])
def test_folder_symlinks_are_not_followed_and_reported(tmp_path, kind):
    """Bad inputs too: a loop, a link to another class, links out of the tree."""
    r = _folder(tmp_path, {"cat": 2, "dog": 3, "owl": 2})
    other = _folder(tmp_path, {"x": 3}, root="elsewhere")
    link = {"loop": r / "cat" / "again", "other-class": r / "cat" / "dogs",
            "outside": r / "cat" / "outside", "class-folder-out": r / "ext"}[kind]
    target = {"loop": r / "cat", "other-class": r / "dog"}.get(kind, other / "x")
    os.symlink(target, link)
    with pytest.warns(UserWarning, match=f"skipped 1 folder symlink.*{link.name}"):
        data = load_image_folder(r, test_size=0.5)
    assert "ext" not in data.classnames or kind != "class-folder-out"
    paths = list(data.X_train) + list(data.X_test)
    labels = np.concatenate([data.y_train, data.y_test])
    cat = data.classnames.index("cat")
    assert (labels == cat).sum() == 2 and not any(link.name in p for p in paths)
    if kind == "outside":  # asked for: followed, once
        data = load_image_folder(r, test_size=0.5, follow_symlinks=True)
        labels = np.concatenate([data.y_train, data.y_test])
        assert (labels == cat).sum() == 5


# ------------------------------------------------------------------ adapter files
def _tamper(ctx, tmp, meta=None, tensors=None, raw=None):
    """Rewrite the fitted model's adapter file with changed metadata / tensors."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(ctx.adapter_file), framework="pt") as f:
        md = json.loads(f.metadata()["skpeal"])
        ts = {k: f.get_tensor(k) for k in f.keys()}
    if meta is not None:
        md = meta(md)
    if tensors is not None:
        ts = tensors(ts)
    path = tmp / "tampered.safetensors"
    text = md if isinstance(md, str) else json.dumps(md)
    save_file(ts, str(path), metadata=raw if raw is not None else {"skpeal": text})
    return CLIPAdapterClassifier(**TINY).load_adapter(path)


def _m(fn):
    """A metadata edit: fn(meta) mutates or returns the new metadata."""

    def edit(md):
        r = fn(md)
        return md if r is None else r

    return lambda ctx, tmp: _tamper(ctx, tmp, meta=edit)


def _t(fn):
    return lambda ctx, tmp: _tamper(ctx, tmp, tensors=fn)


def _first(ts):
    return next(iter(ts))


ADAPTER_CASES = [
    _case("adapter", "no-skpeal-metadata", lambda c, t: _tamper(c, t, raw={"other": "x"}),
          ValueError, "not an skpeal adapter"),
    _case("adapter", "metadata-not-json", lambda c, t: _tamper(c, t, raw={"skpeal": "{oops"}),
          ValueError, "not an skpeal adapter"),
    _case("adapter", "metadata-list", _m(lambda m: [1, 2]), ValueError, "metadata"),
    _case("adapter", "metadata-null", _m(lambda m: "null"), ValueError, "metadata"),
    *[_case("adapter", f"missing-{key}", _m(lambda m, k=key: (m.pop(k), None)[1]), ValueError,
            key)
      for key in ("params", "classes", "classnames", "zero_shot")],
    _case("adapter", "params-not-dict", _m(lambda m: m.update(params=[1])), ValueError,
          "params"),
    _case("adapter", "params-emptied", _m(lambda m: m.update(params={})), ValueError,
          "params"),
    _case("adapter", "params-missing-n_ctx", _m(lambda m: (m["params"].pop("n_ctx"), None)[1]),
          ValueError, "n_ctx"),
    _case("adapter", "params-unknown-key", _m(lambda m: m["params"].update(bogus=1)),
          ValueError, "bogus"),
    _case("adapter", "params-differ", _m(lambda m: m["params"].update(n_ctx=3)), ValueError,
          "n_ctx"),
    _case("adapter", "classes-too-short", _m(lambda m: m.update(classes=m["classes"][:2])),
          ValueError, "classes"),
    _case("adapter", "classes-too-long", _m(lambda m: m.update(classes=m["classes"] + ["z"])),
          ValueError, "classes"),
    _case("adapter", "classes-duplicate",
          _m(lambda m: m.update(classes=[m["classes"][0]] * len(m["classes"]))), ValueError,
          "duplicate"),
    _case("adapter", "classes-not-list", _m(lambda m: m.update(classes="abc")), ValueError,
          "classes"),
    _case("adapter", "classes-unsorted", _m(lambda m: m.update(classes=m["classes"][::-1])),
          ValueError, "classes"),
    _case("adapter", "classnames-wrong-length",
          _m(lambda m: m.update(classnames=m["classnames"][:1])), ValueError, "classnames"),
    _case("adapter", "classnames-not-strings",
          _m(lambda m: m.update(classnames=[1] * len(m["classes"]))), ValueError, "classnames"),
    _case("adapter", "zero_shot-string", _m(lambda m: m.update(zero_shot="yes")), ValueError,
          "zero_shot"),
    _case("adapter", "tensor-nan", _t(lambda ts: {k: v * float("nan") for k, v in ts.items()}),
          ValueError, "finite|NaN"),
    _case("adapter", "tensor-inf", _t(lambda ts: {k: v + float("inf") for k, v in ts.items()}),
          ValueError, "finite|inf"),
    _case("adapter", "tensor-missing", _t(lambda ts: {}), ValueError, "prompt.ctx"),
    _case("adapter", "tensor-extra", _t(lambda ts: {**ts, "extra.w": torch.zeros(2)}),
          ValueError, "extra.w"),
    _case("adapter", "tensor-wrong-shape",
          _t(lambda ts: {k: v[:, :2].contiguous() for k, v in ts.items()}), ValueError, "shape"),
    _case("adapter", "tensor-int-dtype",
          _t(lambda ts: {k: v.to(torch.int32) for k, v in ts.items()}), ValueError, "dtype"),
    _case("adapter", "file-garbage",
          lambda c, t: ((t / "g.safetensors").write_bytes(b"garbage"),
                        CLIPAdapterClassifier(**TINY).load_adapter(t / "g.safetensors")),
          ValueError, "g.safetensors"),
    _case("adapter", "file-truncated",
          lambda c, t: ((t / "c.safetensors").write_bytes(c.adapter_file.read_bytes()[:-20]),
                        CLIPAdapterClassifier(**TINY).load_adapter(t / "c.safetensors")),
          ValueError, "c.safetensors"),
    _case("adapter", "file-missing",
          lambda c, t: CLIPAdapterClassifier(**TINY).load_adapter(t / "none.safetensors"),
          ValueError, "none.safetensors"),
    _case("adapter", "save-unfitted",
          lambda c, t: CLIPAdapterClassifier(**TINY).save_adapter(t / "u.safetensors"),
          NotFittedError, "not fitted"),
    _case("adapter", "load-into-other-adapter",
          lambda c, t: CLIPAdapterClassifier(**TINY, adapter="lora").load_adapter(
              c.adapter_file), ValueError, "adapter='prompt'"),
]


# ------------------------------------------------------------------ the Python API, run
class _Ctx:
    def __init__(self, root):
        self.root = root

    @property
    def fitted(self):
        if not hasattr(self, "_fitted"):
            self._fitted = _fit()
        return self._fitted

    @property
    def adapter_file(self):
        path = self.root / "adapter.safetensors"
        if not path.exists():
            self.fitted.save_adapter(path)
        return path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return _Ctx(tmp_path_factory.mktemp("bad-inputs"))


API_CASES = (PARAM_CASES + DATA_CASES + IMAGE_CASES + STRATEGY_CASES + METRIC_CASES
             + LOSS_CASES + DATASET_CASES + ADAPTER_CASES)


@pytest.mark.parametrize("fn, exc, match", API_CASES)
def test_bad_input_gets_a_clear_error(fn, exc, match, ctx, tmp_path):
    with pytest.raises(exc, match=match):
        fn(ctx, tmp_path)


# ------------------------------------------------------------------ the command line
BASE = ["--data", "digits", "--model", "skpeal-tiny", "--strategies", "random", "--rounds",
        "2", "--pool-size", "60", "--test-size", "30", "--epochs", "1", "--n-ctx", "4",
        "--quiet"]


def _run(tmp, *extra, out="o"):
    return ["run", *BASE, "--out", str(tmp / out), *extra]


def _one_class_folder(tmp):
    _folder(tmp, {"only": 6})
    return ["run", *BASE, "--data", str(tmp / "imgs"), "--out", str(tmp / "o")]


def _nonfinite(flag, value):
    return lambda tmp: _run(tmp, flag, value, "--strategies", "calibrated-entropy")


CLI_CASES = [
    _case("cli", "strategy-unknown", lambda t: _run(t, "--strategies", "foo"), 2,
          "unknown strategy 'foo'"),
    _case("cli", "strategy-twice", lambda t: _run(t, "--strategies", "random", "random"), 2,
          "listed twice"),
    _case("cli", "budget-zero", lambda t: _run(t, "--budget", "0"), 2, "budget"),
    _case("cli", "rounds-zero", lambda t: _run(t, "--rounds", "0"), 2, "rounds"),
    _case("cli", "gamma-zero", lambda t: _run(t, "--gamma", "0"), 2, "gamma"),
    _case("cli", "gamma-above-1", lambda t: _run(t, "--gamma", "2"), 2, "gamma"),
    _case("cli", "seeds-negative", lambda t: _run(t, "--seeds", "-1"), 2, "seeds"),
    _case("cli", "pool-size-zero", lambda t: _run(t, "--pool-size", "0"), 2, "--pool-size must be"),
    _case("cli", "test-size-zero", lambda t: _run(t, "--test-size", "0"), 2, "--test-size must be"),
    _case("cli", "data-missing", lambda t: _run(t, "--data", "/no/such/folder"), 2,
          "neither 'fashion-mnist'"),
    _case("cli", "data-one-class", _one_class_folder, 2, "single class.*only"),
    _case("cli", "epochs-negative", lambda t: _run(t, "--epochs", "-1"), 2, "max_epochs"),
    _case("cli", "lr-zero", lambda t: _run(t, "--lr", "0"), 2, "lr"),
    _case("cli", "batch-size-zero", lambda t: _run(t, "--batch-size", "0"), 2, "batch_size"),
    _case("cli", "n-ctx-zero", lambda t: _run(t, "--n-ctx", "0"), 2, "n_ctx"),
    _case("cli", "device-unknown", lambda t: _run(t, "--device", "tpu"), 2, "device"),
    _case("cli", "lr-huge", _nonfinite("--lr", "1e30"), 2, "--lr"),
    _case("cli", "calibration-weight-huge", _nonfinite("--calibration-weight", "1e300"), 2,
          "--calibration-weight"),
    _case("cli", "budget-above-pool", lambda t: _run(t, "--budget", "50"), 2, "pool"),
    _case("cli", "pool-size-tiny", lambda t: _run(t, "--pool-size", "12"), 2, "pool"),
    _case("cli", "out-is-a-file", lambda t: ((t / "f").write_text("x"), _run(t, out="f"))[1], 2,
          "f"),
    _case("cli", "report-missing", lambda t: ["report", str(t / "none")], 2, "no skpeal run"),
    _case("cli", "report-empty-state", lambda t: ((t / "r" / "state").mkdir(parents=True),
                                                   ["report", str(t / "r")])[1], 2,
          "no completed round"),
]


@pytest.mark.parametrize("argv, status, match", CLI_CASES)
def test_bad_command_line_gives_one_error_line(argv, status, match, tmp_path, capsys):
    assert main(argv(tmp_path)) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("skpeal: error:") and __import__("re").search(match, err[0]), err


# ------------------------------------------------------------------ tampered run state
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", *BASE, "--out", str(out)]) == 0
    return out


def _state_file(out):
    return next((out / "state").glob("*.json"))


def _edit_state(fn):
    def edit(out):
        p = _state_file(out)
        if isinstance(fn, str):
            p.write_text(fn)
            return
        s = json.loads(p.read_text())
        fn(s)
        p.write_text(json.dumps(s))

    return edit


def _set_labelled(i, value):
    return _edit_state(lambda s: s["labelled"].__setitem__(i, value))


def _edit_config(out):
    cfg = json.loads((out / "config.json").read_text())
    cfg["estimator_params"]["max_epochs"] = 3
    (out / "config.json").write_text(json.dumps(cfg))


def _scase(area, name, fn, match, xfail=None):
    return pytest.param(fn, match, id=f"{area}:{name}", marks=[_xf(xfail)] if xfail else [])


STATE_CASES = [
    _scase("state", "not-json", _edit_state('{"strategy": "random", "rounds": [1 2]}'),
          "random__seed0.json"),
    _scase("state", "empty-object", _edit_state("{}"), "random__seed0.json"),
    _scase("state", "not-an-object", _edit_state("[1, 2]"), "random__seed0.json"),
    _scase("state", "index-negative", _set_labelled(0, -1), "-1"),
    _scase("state", "index-huge", _set_labelled(0, 10**6), "1000000"),
    _scase("state", "index-not-int", _set_labelled(0, "x"), "random__seed0.json"),
    _scase("state", "index-duplicated",
          _edit_state(lambda s: s["labelled"].__setitem__(1, s["labelled"][0])), "twice|duplic"),
    _scase("state", "rounds-trimmed", _edit_state(lambda s: s["rounds"].pop()),
          "random__seed0.json"),
    _scase("state", "selected-mismatch",
          _edit_state(lambda s: s["rounds"][0]["selected"].__setitem__(0, 59)),
          "random__seed0.json"),
    _scase("state", "strategy-renamed", _edit_state(lambda s: s.update(strategy="entropy")),
          "random__seed0.json"),
    _scase("state", "config-hash-missing", _edit_state(lambda s: s.pop("config_hash", None)),
          "configuration"),
    _scase("state", "config-edited", _edit_config, "configuration|config_hash|config.json"),
    _scase("state", "config-not-json", lambda out: (out / "config.json").write_text("{nope"),
          "config.json"),
]


@pytest.mark.parametrize("command", ["run", "report"])
@pytest.mark.parametrize("tamper, match", STATE_CASES)
def test_tampered_state_is_named_with_the_way_out(tamper, match, command, finished_run,
                                                  tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    tamper(out)
    argv = ["run", *BASE, "--out", str(out)] if command == "run" else ["report", str(out)]
    if tamper is _edit_config and command == "run":  # the settings of the edited config
        argv[argv.index("--epochs") + 1] = "3"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skpeal: error:"), err
    assert __import__("re").search(match, err[0]), err


def test_state_without_config_is_not_relabelled(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "config.json").unlink()
    assert main(["run", *BASE, "--epochs", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "random__seed0.json" in err[0] and "--overwrite" in err[0], err


def test_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "o"
    assert main(_run(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0] and "config.json" in err[0], err
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ concurrent runs
def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    return [sys.executable, "-m", "skpeal.cli", *args], env


@pytest.mark.parametrize("overwrite", [False, True], ids=["same-config", "overwrite"])
def test_a_second_run_on_the_same_out_is_refused(tmp_path, overwrite):
    out = tmp_path / "o"
    # a run that would take minutes: it is killed once the second is answered
    first_args = ["run", *BASE, "--rounds", "25", "--pool-size", "300", "--epochs", "400",
                  "--seeds", "0", "1", "2", "--out", str(out)]
    cmd, env = _cli(*first_args)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 120
        while not (out / "state").is_dir() and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()
        second_args = ["run", *BASE, "--epochs", "1", "--out", str(out)]
        if overwrite:
            second_args.append("--overwrite")
        cmd2, _ = _cli(*second_args)
        done = subprocess.run(cmd2, env=env, capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # the first still runs: the refusal was the lock
    finally:
        first.kill()
        first.communicate()
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and err[0].startswith("skpeal: error:") and "in use" in err[0], err
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ good inputs once refused
def test_float16_probabilities_pass_the_row_sum_check():
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(0)) * 3
    proba = torch.softmax(logits, dim=1).half().numpy()
    assert np.abs(proba.astype(np.float64).sum(1) - 1).max() > 1e-4  # the old check failed
    out = strategies.check_proba(proba)
    assert out.dtype == np.float64 and out.shape == (200, 10)
    fake = _Fake(proba)
    fake.proba = proba  # a classifier that returns float16 rows
    idx, _ = strategies.entropy_sampling(fake, np.arange(200), 3)
    assert len(set(idx.tolist())) == 3


def test_a_file_rewritten_with_the_same_size_and_mtime_is_encoded_again(tmp_path):
    from skpeal.images.fingerprints import file_key

    path = tmp_path / "img.bmp"  # BMP: the same size for the same dimensions
    Image.fromarray(X40[0]).save(path)
    est = _fit(X40[:6], Y40[:6])
    before = est.predict_proba([str(path)])
    st = os.stat(path)
    key = file_key(path)
    time.sleep(0.01)
    Image.fromarray(255 - X40[0]).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert file_key(path) != key
    after = est.predict_proba([str(path)])
    fresh = CLIPAdapterClassifier(**{**TINY, "max_epochs": 1, "feature_cache": False}).fit(
        X40[:6], Y40[:6]).predict_proba([str(path)])
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, fresh, atol=1e-6)


@pytest.mark.parametrize("tamper", [_edit_config, _edit_state(lambda s: s.pop("config_hash"))],
                         ids=["config-edited", "hash-missing"])
def test_overwrite_is_the_way_out_of_a_foreign_state_file(finished_run, tmp_path, tamper,
                                                          capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    tamper(out)
    argv = ["run", *BASE, "--out", str(out)]
    if tamper is _edit_config:
        argv[argv.index("--epochs") + 1] = "3"
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    state = json.loads(_state_file(out).read_text())
    assert len(state["rounds"]) == 2 and len(set(state["labelled"])) == 20
