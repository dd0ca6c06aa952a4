import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from skpeal import CLIPAdapterClassifier
from tests.conftest import TINY, requires_cuda

# ---------------------------------------------------------------- sklearn API checks


def test_sklearn_api_checks_that_apply_to_an_image_estimator():
    est = CLIPAdapterClassifier(**TINY)
    name = type(est).__name__
    check_parameters_default_constructible(name, CLIPAdapterClassifier())
    check_no_attributes_set_in_init(name, est)
    check_get_params_invariance(name, est)
    check_set_params(name, est)
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    assert "skpeal-tiny" in repr(est)
    from sklearn.base import is_classifier

    assert is_classifier(est)


def test_init_stores_params_unchanged_and_validation_is_at_fit(small_images):
    X, y = small_images
    est = CLIPAdapterClassifier(adapter="foo", lr=-1)
    assert est.adapter == "foo" and est.lr == -1
    with pytest.raises(ValueError, match="adapter must be one of"):
        est.fit(X, y)


def test_fit_returns_self_and_sets_fitted_attributes(small_images):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=2)
    assert est.fit(X, y) is est
    assert list(est.classes_) == ["bird", "cat", "dog"]
    assert len(est.history_) == 2
    assert set(est.history_[0]) >= {"epoch", "loss", "ce", "calibration", "train_accuracy", "time"}
    assert est.device_ == torch.device("cpu")
    assert est.n_trainable_params_ == 3 * 4 * 32  # class-specific context: C x n_ctx x width


@pytest.mark.parametrize("method", ["predict", "predict_proba", "embed", "score"])
def test_unfitted_raises_not_fitted(small_images, method):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY)
    with pytest.raises(NotFittedError):
        getattr(est, method)(*((X, y) if method == "score" else (X,)))


def test_predict_proba_predict_embed_contract(small_images):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=1).fit(X, y)
    proba = est.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (40, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    pred = est.predict(X)
    assert pred.dtype == est.classes_.dtype and set(pred) <= set(est.classes_)
    np.testing.assert_array_equal(pred, est.classes_[proba.argmax(1)])
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), proba, rtol=1e-10)
    feats = est.embed(X)
    assert feats.shape == (40, 16) and feats.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    p2, f2 = est.predict_proba_embed(X)
    np.testing.assert_allclose(p2, proba)
    np.testing.assert_allclose(f2, feats)
    assert 0.0 <= est.score(X, y) <= 1.0


def test_int_and_string_labels_and_classes_param(small_images):
    X, y = small_images
    y_int = np.searchsorted(np.unique(y), y) * 10  # 0, 10, 20
    est = CLIPAdapterClassifier(**TINY, max_epochs=1).fit(X, y_int)
    assert list(est.classes_) == [0, 10, 20]
    assert set(est.predict(X)) <= {0, 10, 20}
    # classes absent from y are still columns and can be predicted
    est = CLIPAdapterClassifier(**TINY, max_epochs=1, classes=["cat", "dog", "bird", "fish"])
    est.fit(X[y != "bird"], y[y != "bird"])
    assert list(est.classes_) == ["bird", "cat", "dog", "fish"]
    assert est.predict_proba(X).shape == (40, 4)
    # classnames as a list aligned with `classes`, or a mapping
    est = CLIPAdapterClassifier(**TINY, max_epochs=0, classes=[2, 1],
                                classnames=["two", "one"]).fit(X[:4], [1, 2, 1, 2])
    assert est._fit_spec.classnames == ("one", "two")
    est.set_params(classnames={1: "uno", 2: "dos"}).fit(X[:4], [1, 2, 1, 2])
    assert est._fit_spec.classnames == ("uno", "dos")


def test_zero_shot_with_and_without_labels(small_images):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=0).fit(X, y)
    assert est.history_ == [] and est.model_.zero_shot
    # zero-shot = scaled cosine with the template text features, no adapter involved
    m = est.model_
    with torch.no_grad():
        tok = m.tokenizer([f"a photo of a {c}." for c in est.classes_])
        t = torch.nn.functional.normalize(m.clip.encode_text(tok), dim=-1)
        f = torch.from_numpy(est.embed(X)).float()
        ref = torch.softmax(m.clip.logit_scale.exp() * f @ t.T, dim=1).double().numpy()
    np.testing.assert_allclose(est.predict_proba(X), ref, atol=1e-5)
    # no labels at all: classes given, max_epochs=0
    unl = CLIPAdapterClassifier(**TINY, max_epochs=0, classes=["bird", "cat", "dog"]).fit(X)
    np.testing.assert_allclose(unl.predict_proba(X), est.predict_proba(X))
    with pytest.raises(ValueError, match="max_epochs=0"):
        CLIPAdapterClassifier(**TINY, classes=["a", "b"]).fit(X)


def _adapter_and_base(est):
    return {n: p.detach().clone() for n, p in est.model_.named_parameters()}


@pytest.mark.parametrize("adapter", ["prompt", "lora"])
def test_only_adapter_parameters_change(small_images, adapter):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, adapter=adapter, max_epochs=0,
                                lora_targets="attention+mlp").fit(X, y)
    before = _adapter_and_base(est)
    buffers = {n: b.clone() for n, b in est.model_.named_buffers()}
    est.set_params(max_epochs=2, lr=0.05).fit(X, y)
    after = _adapter_and_base(est)
    assert before.keys() == after.keys()
    trainable = {n for n, p in est.model_.named_parameters() if p.requires_grad}
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed & trainable
    # peft's LoRA on nn.MultiheadAttention merges and unmerges the base weights inside every
    # forward; that round trip moves them by float rounding only (an ulp or so), nothing more.
    for n in changed - trainable:
        torch.testing.assert_close(after[n], before[n], rtol=1e-6, atol=1e-7)
    assert all(("lora_" in n) if adapter == "lora" else n.endswith("ctx") for n in trainable)
    for n, b in est.model_.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_same_random_state_same_model_and_global_rng_untouched(small_images):
    X, y = small_images
    torch.manual_seed(5)
    np.random.seed(5)
    expected_t, expected_n = torch.rand(2), np.random.rand(2)
    torch.manual_seed(5)
    np.random.seed(5)
    kw = dict(TINY, adapter="lora", max_epochs=2, augment=True)
    a = CLIPAdapterClassifier(**kw).fit(X, y)
    assert torch.equal(torch.rand(2), expected_t) and np.array_equal(np.random.rand(2), expected_n)
    b = CLIPAdapterClassifier(**kw).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = CLIPAdapterClassifier(**{**kw, "random_state": 1}).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # a second fit starts afresh: same result as the first
    np.testing.assert_array_equal(a.fit(X, y).predict_proba(X), b.predict_proba(X))


def test_calibration_on_vs_off_changes_training(small_images):
    X, y = small_images
    off = CLIPAdapterClassifier(**TINY, max_epochs=3, calibration=None, lr=0.05).fit(X, y)
    on = CLIPAdapterClassifier(**TINY, max_epochs=3, calibration="balanced",
                               calibration_weight=2.0, lr=0.05).fit(X, y)
    assert all(h["calibration"] == 0.0 for h in off.history_)
    assert any(h["calibration"] > 0.0 for h in on.history_)
    assert on.history_[-1]["calibration_weight"] == pytest.approx(2.0)
    assert not np.allclose(on.predict_proba(X), off.predict_proba(X))


@pytest.mark.parametrize(
    "adapter, extra, threshold",
    [("prompt", dict(optimizer="adamw", lr=0.05), 0.17),
     ("lora", dict(optimizer="adamw", lr=0.01, lora_targets="attention+mlp"), 0.22)],
)
def test_fits_on_real_images_beat_chance(digits, adapter, extra, threshold):
    # 10 classes: chance is 0.10 (std of a chance score on 300 images is about 0.017).
    X, y, X_test, y_test = digits
    est = CLIPAdapterClassifier(**TINY, adapter=adapter, max_epochs=10, **extra).fit(X, y)
    assert est.score(X_test, y_test) > threshold


@pytest.mark.parametrize("adapter", ["prompt", "lora"])
def test_pickle_and_joblib_round_trip_without_the_backbone(small_images, tmp_path, adapter):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, adapter=adapter, max_epochs=1, lr=0.05).fit(X, y)
    blob = pickle.dumps(est)
    n_backbone = sum(p.numel() for p in est.model_.parameters()) - est.n_trainable_params_
    assert len(blob) < 4 * n_backbone / 10  # far smaller than the backbone's float32 weights
    back = pickle.loads(blob)
    np.testing.assert_allclose(back.predict_proba(X), est.predict_proba(X), atol=1e-6)
    joblib.dump(est, tmp_path / "m.joblib")
    again = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    assert again.get_params() == est.get_params()


def test_save_and_load_adapter(small_images, tmp_path):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=1, lr=0.05).fit(X, y)
    path = tmp_path / "adapter.safetensors"
    est.save_adapter(path)
    fresh = CLIPAdapterClassifier(**TINY).load_adapter(path)
    np.testing.assert_array_equal(fresh.classes_, est.classes_)
    np.testing.assert_allclose(fresh.predict_proba(X), est.predict_proba(X), atol=1e-6)
    with pytest.raises(ValueError, match="n_ctx"):
        CLIPAdapterClassifier(**{**TINY, "n_ctx": 3}).load_adapter(path)
    not_adapter = tmp_path / "x.safetensors"
    not_adapter.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not an skpeal adapter"):
        CLIPAdapterClassifier(**TINY).load_adapter(not_adapter)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(adapter="foo"), "adapter"),
        (dict(calibration="tanh"), "calibration"),
        (dict(max_epochs=-1), "max_epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=0), "lr"),
        (dict(optimizer="adam"), "optimizer"),
        (dict(device="tpu"), "device"),
        (dict(precision="fp8"), "precision"),
        (dict(templates=["no placeholder"]), "templates"),
        (dict(lora_towers="image"), "lora_towers"),
        (dict(random_state="x"), "random_state"),
        (dict(predict_batch_size=0), "predict_batch_size must be 'auto' or an integer"),
        (dict(predict_batch_size="big"), "predict_batch_size must be 'auto' or an integer"),
    ],
)
def test_bad_params(small_images, params, match):
    X, y = small_images
    with pytest.raises(ValueError, match=match):
        CLIPAdapterClassifier(**{**TINY, **params}).fit(X, y)


def test_bad_data(small_images, tmp_path):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=1)
    with pytest.raises(ValueError, match="40 images but y has 39"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="empty"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="single class"):
        est.fit(X[:3], ["a", "a", "a"])
    with pytest.raises(ValueError, match="not in classes"):
        CLIPAdapterClassifier(**TINY, classes=["cat", "dog"]).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        est.fit(X[:, :, :, 0, None, None], y)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.full((40, 32, 32), np.nan), y)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.jpg"):
        est.fit([str(bad)] * 2, ["a", "b"])
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, np.linspace(0, 1, 40))


def test_verbose_shows_a_progress_bar(small_images, capsys):
    X, y = small_images
    CLIPAdapterClassifier(**TINY, max_epochs=2, verbose=1).fit(X, y)
    assert "epoch" in capsys.readouterr().err


def test_cuda_device_refused_without_cuda(small_images):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    X, y = small_images
    with pytest.raises(ValueError, match="CUDA is not available"):
        CLIPAdapterClassifier(**TINY, device="cuda").fit(X, y)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("adapter", ["prompt", "lora"])
def test_gpu_fit_predict_and_cpu_loadable_pickle(small_images, adapter):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, adapter=adapter, device="cuda", max_epochs=2).fit(X, y)
    assert est.device_.type == "cuda"
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(back.predict_proba(X), proba, atol=1e-6)


def test_warm_start_continues_from_the_previous_adapter(small_images):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=2, lr=0.05).fit(X, y)
    trained = est.predict_proba(X)
    est.set_params(warm_start=True, max_epochs=0).fit(X, y)  # no training: the old adapter
    np.testing.assert_allclose(est.predict_proba(X), trained, atol=1e-6)
    est.set_params(warm_start=False).fit(X, y)  # a fresh (zero-shot) model
    assert not np.allclose(est.predict_proba(X), trained)
    # other classes: a fresh adapter, not an error
    est.set_params(max_epochs=2).fit(X, y)
    est.set_params(warm_start=True, classes=["bird", "cat", "dog", "fish"]).fit(X, y)
    assert est.predict_proba(X).shape == (40, 4)


def test_auto_predict_batch_size():
    from skpeal._runtime import auto_batch_size

    assert auto_batch_size("cpu", 112) == 16
    assert auto_batch_size("cpu", 224) == 4
    assert auto_batch_size("cpu", 1000) == 1
    assert auto_batch_size("cpu", 16) == 256
    assert auto_batch_size("cuda", 224) == 256


def test_predict_batch_size_does_not_change_predictions(small_images):
    X, y = small_images
    kw = dict(TINY, max_epochs=1, feature_cache=False, random_state=0)
    auto = CLIPAdapterClassifier(**kw).fit(X, y)
    three = CLIPAdapterClassifier(**kw, predict_batch_size=3).fit(X, y)
    assert auto._fit_spec.runtime.predict_batch_size == "auto"
    assert three._fit_spec.runtime.predict_batch_size == 3
    np.testing.assert_allclose(three.predict_proba(X), auto.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_auto_predict_batch_size_reaches_the_encoder(small_images):
    from skpeal._runtime import auto_batch_size
    from skpeal.estimator import _encoder

    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=0, device="cpu").fit(X, y)
    enc = _encoder(est.model_, est._preprocess, est._fit_spec)
    assert enc.batch_size == auto_batch_size("cpu", est._preprocess.image_size)
    est = CLIPAdapterClassifier(**TINY, max_epochs=0, device="cpu", predict_batch_size=5)
    est.fit(X, y)
    assert _encoder(est.model_, est._preprocess, est._fit_spec).batch_size == 5
