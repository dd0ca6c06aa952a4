"""scikit-learn's common estimator checks, run the way imbalanced-learn and skorch run them.

``CLIPAdapterClassifier`` declares ``input_tags.two_d_array=False`` (its ``X`` is a batch
of images), and with that tag scikit-learn generates no check at all. Here a test-only
subclass declares 2-D input so that :func:`~sklearn.utils.estimator_checks.
parametrize_with_checks` yields every check: the API checks run and must pass; the
checks that feed tabular ``(n_samples, n_features)`` data cannot apply to an image
estimator and are listed as expected failures, each with a one-line reason naming the
image version of the check further down in this file.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from skpeal import CLIPAdapterClassifier
from tests.conftest import TINY

FAST = dict(**TINY, max_epochs=2, lr=0.05)


class _TabularTagged(CLIPAdapterClassifier):
    """The estimator, tagged as taking 2-D input only so that scikit-learn yields its checks."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


_TABULAR = "2-D tabular X is not an image batch (n, H, W[, C]); image version: "
EXPECTED_FAILED_CHECKS = {
    "check_fit_score_takes_y": _TABULAR + "test_fit_and_score_take_y",
    "check_estimators_overwrite_params": _TABULAR + "test_fit_leaves_params_unchanged",
    "check_dont_overwrite_parameters": _TABULAR + "test_fit_sets_only_private_or_fitted_attrs",
    "check_estimators_fit_returns_self": _TABULAR + "test_fit_returns_self_and_classes",
    "check_readonly_memmap_input": _TABULAR + "test_memmap_read_only_and_f_ordered_input",
    "check_n_features_in_after_fitting": "images have no n_features_in_ (any size is resized)",
    "check_n_features_in": "images have no n_features_in_ (any size is resized)",
    "check_positive_only_tag_during_fit": _TABULAR + "test_bad_inputs.py images:*",
    "check_estimators_dtypes": _TABULAR + "test_image_modes.py test_array_dtype_*",
    "check_complex_data": _TABULAR + "test_bad_inputs.py images:complex-array",
    "check_dtype_object": "a 2-D object array is not a list of paths; test_bad_inputs.py",
    "check_estimators_empty_data_messages": _TABULAR + "test_bad_inputs.py data:X-empty",
    "check_pipeline_consistency": _TABULAR + "test_pipeline",
    "check_estimators_nan_inf": _TABULAR + "test_bad_inputs.py images:float-nan/-inf",
    "check_estimator_sparse_tag": "sparse matrices are not images",
    "check_estimator_sparse_array": "sparse matrices are not images",
    "check_estimator_sparse_matrix": "sparse matrices are not images",
    "check_estimators_pickle": _TABULAR + "test_pickle_round_trip_predicts_the_same",
    "check_f_contiguous_array_estimator": _TABULAR + "test_memmap_read_only_and_f_ordered_input",
    "check_classifier_data_not_an_array": "a wrapped 2-D array is not an image container",
    "check_classifiers_one_label": _TABULAR + "test_bad_inputs.py data:y-single-class",
    "check_classifiers_classes": _TABULAR + "test_fit_returns_self_and_classes",
    "check_classifiers_train": _TABULAR + "test_predict_is_argmax_of_proba",
    "check_classifiers_regression_target": _TABULAR + "test_bad_inputs.py data:y-continuous",
    "check_supervised_y_2d": _TABULAR + "test_bad_inputs.py data:y-2d",
    "check_methods_sample_order_invariance": _TABULAR + "test_subset_and_order_invariance",
    "check_methods_subset_invariance": _TABULAR + "test_subset_and_order_invariance",
    "check_fit2d_1sample": _TABULAR + "test_one_image_per_class_fits",
    "check_fit2d_1feature": "a one-feature row is not an image",
    "check_dict_unchanged": _TABULAR + "test_predict_leaves_the_estimator_unchanged",
    "check_fit_idempotent": _TABULAR + "test_fit_is_idempotent",
    "check_fit_check_is_fitted": _TABULAR + "test_fit_check_is_fitted",
    "check_fit2d_predict1d": _TABULAR + "test_bad_inputs.py data:embed-wrong-rank",
    "check_requires_y_none": _TABULAR + "test_bad_inputs.py data:y-none-trained",
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS


@parametrize_with_checks([_TabularTagged(**FAST)], expected_failed_checks=_expected_failed_checks)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


def test_the_real_tags_say_images():
    tags = CLIPAdapterClassifier().__sklearn_tags__()
    assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array
    assert tags.estimator_type == "classifier" and not tags.non_deterministic


# ------------------------------------------------------------------ image versions
@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    y = np.array(["cat", "dog", "bird"] * 8)
    return X, y


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    return CLIPAdapterClassifier(**FAST).fit(X, y)


def test_fit_returns_self_and_classes(images):
    X, y = images
    est = CLIPAdapterClassifier(**FAST)
    assert est.fit(X, y) is est
    assert list(est.classes_) == ["bird", "cat", "dog"]
    assert set(est.predict(X)) <= set(est.classes_)
    ints = CLIPAdapterClassifier(**FAST).fit(X, np.array([3, 1, 2] * 8))
    assert ints.classes_.tolist() == [1, 2, 3] and ints.predict(X).dtype == ints.classes_.dtype


def test_fit_and_score_take_y(images, fitted):
    X, y = images
    assert 0.0 <= fitted.score(X, y) <= 1.0


def test_fit_is_idempotent(images):
    X, y = images
    est = CLIPAdapterClassifier(**FAST)
    first = est.fit(X, y).predict_proba(X)
    second = est.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(clone(est).fit(X, y).predict_proba(X), first)


def test_fit_leaves_params_unchanged(images):
    X, y = images
    est = CLIPAdapterClassifier(**FAST, classes=["bird", "cat", "dog"], templates=["a {}."])
    before = {k: (v.copy() if isinstance(v, list) else v) for k, v in est.get_params().items()}
    est.fit(X, y)
    assert est.get_params() == before


def test_fit_sets_only_private_or_fitted_attrs(images):
    X, y = images
    est = CLIPAdapterClassifier(**FAST)
    public_before = {k for k in vars(est) if not k.startswith("_")}
    est.fit(X, y)
    added = {k for k in vars(est) if not k.startswith("_")} - public_before
    assert added and all(k.endswith("_") for k in added), added


def test_predict_leaves_the_estimator_unchanged(images, fitted):
    X, _ = images
    before = {k: v for k, v in vars(fitted).items() if not isinstance(v, torch.nn.Module)}
    state = {k: t.clone() for k, t in fitted.model_.state_dict().items()}
    fitted.predict(X)
    fitted.predict_proba(X)
    fitted.embed(X)
    after = {k: v for k, v in vars(fitted).items() if not isinstance(v, torch.nn.Module)}
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    assert all(torch.equal(state[k], t) for k, t in fitted.model_.state_dict().items())


def test_fit_check_is_fitted(images):
    X, y = images
    est = CLIPAdapterClassifier(**FAST)
    for method in ("predict", "predict_proba", "predict_log_proba", "embed"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(X)
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est.fit(X, y))


def test_subset_and_order_invariance(images, fitted):
    X, _ = images
    full = fitted.predict_proba(X)
    np.testing.assert_allclose(fitted.predict_proba(X[5:11]), full[5:11], atol=1e-6)
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(fitted.predict_proba(X[perm]), full[perm], atol=1e-6)
    np.testing.assert_allclose(fitted.predict_proba(X[3:4]), full[3:4], atol=1e-6)


def test_memmap_read_only_and_f_ordered_input(images, fitted, tmp_path):
    X, y = images
    ref = fitted.predict_proba(X)
    mm = np.memmap(tmp_path / "X.dat", dtype=np.uint8, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(tmp_path / "X.dat", dtype=np.uint8, mode="r", shape=X.shape)
    frozen = X.copy()
    frozen.flags.writeable = False
    for variant in (mm, ro, frozen, np.asfortranarray(X), X[:, :, :, ::-1][:, :, :, ::-1]):
        np.testing.assert_allclose(fitted.predict_proba(variant), ref, atol=1e-6)
    refit = CLIPAdapterClassifier(**FAST).fit(ro, y).predict_proba(X)
    np.testing.assert_allclose(refit, CLIPAdapterClassifier(**FAST).fit(X, y).predict_proba(X),
                               atol=1e-6)


def test_inputs_are_not_mutated(images):
    X, y = images
    X0, y0 = X.copy(), y.copy()
    t = torch.from_numpy(X.copy()).permute(0, 3, 1, 2)
    t0 = t.clone()
    est = CLIPAdapterClassifier(**FAST).fit(X, y)
    est.predict_proba(X)
    est.predict_proba(t)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert torch.equal(t, t0)


def test_global_rng_untouched(images):
    X, y = images
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    est = CLIPAdapterClassifier(**FAST, augment=True).fit(X, y)
    est.predict_proba(X)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


def test_predict_is_argmax_of_proba(images, fitted):
    X, _ = images
    proba = fitted.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(1)])
    np.testing.assert_allclose(np.exp(fitted.predict_log_proba(X)), proba, atol=1e-9)


def test_one_image_per_class_fits(images):
    X, y = images
    est = CLIPAdapterClassifier(**FAST).fit(X[:3], y[:3])
    assert est.predict_proba(X).shape == (len(X), 3)


def test_pickle_round_trip_predicts_the_same(images, fitted):
    X, _ = images
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(again.predict_proba(X), fitted.predict_proba(X), atol=1e-6)


def test_grid_search(images):
    X, y = images
    search = GridSearchCV(CLIPAdapterClassifier(**FAST), {"lr": [0.01, 0.05]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in (0.01, 0.05)
    assert search.cv_results_["mean_test_score"].shape == (2,)
    assert search.predict(X).shape == (len(X),)


def test_cross_val_score_in_two_processes(images):
    X, y = images
    scores = cross_val_score(CLIPAdapterClassifier(**FAST), X, y, cv=2, n_jobs=2)
    serial = cross_val_score(CLIPAdapterClassifier(**FAST), X, y, cv=2, n_jobs=1)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, serial)


def test_pipeline(images):
    X, y = images
    to_float = FunctionTransformer(lambda a: a.astype(np.float32) / 255.0)
    pipe = make_pipeline(to_float, CLIPAdapterClassifier(**FAST)).fit(X, y)
    direct = CLIPAdapterClassifier(**FAST).fit(X, y)
    np.testing.assert_allclose(pipe.predict_proba(X), direct.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(clone(pipe).fit(X, y).predict(X), pipe.predict(X))
