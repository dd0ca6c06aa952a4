"""The CUDA path: mixed precision, GradScaler, pickles to the CPU, merged LoRA, feature cache.

Every test here is marked ``gpu`` and needs a CUDA device; without one they are skipped.
``SKPEAL_GPU_DRY_RUN=1`` runs them on the CPU instead (``benchmarks/gpu_check.sh --cpu``
does), so that the device check cannot fail on a typo: on the CPU every precision is
float32, the assertions that only mean something on CUDA are left out, and fewer cases
run.

Tolerances (largest absolute difference of a probability against fp32, 10 classes, the
tiny random model, digits images). They were set from the same comparisons run on the CPU
under CPU autocast (bfloat16 and float16 substituted for fp32 by hand), five seeds each:

* predicting with the same adapter weights: bf16 <= 0.05 (seen up to 0.03), fp16 <= 0.01
  (seen up to 0.002);
* fitting and predicting (3 epochs, lr 0.002): bf16 <= 0.1 (seen up to 0.034), fp16 <=
  0.05 (seen up to 0.017). Larger learning rates on this random model amplify rounding
  differences along the training path (up to 0.6 with lr 0.05), so the fit comparison
  uses a small one.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from skpeal import CLIPAdapterClassifier
from skpeal.features import get_feature_cache
from tests.conftest import TINY


def _device():
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("SKPEAL_GPU_DRY_RUN") == "1":
        return torch.device("cpu")
    return None


DEVICE = _device()
ON_CUDA = DEVICE is not None and DEVICE.type == "cuda"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE is None, reason="needs a CUDA device (SKPEAL_GPU_DRY_RUN=1 runs it on the CPU)"
    ),
]

#: Largest |p - p_fp32| when predicting with the same weights (see the module docstring).
PREDICT_TOL = {"bf16": 0.05, "fp16": 0.01}
#: Largest |p - p_fp32| after fitting in each precision (3 epochs, lr 0.002).
FIT_TOL = {"bf16": 0.1, "fp16": 0.05}
# The CPU dry run checks the code, not the numbers: one adapter that takes both paths.
ADAPTERS = ["prompt", "lora", "prompt+lora"] if ON_CUDA else ["prompt+lora"]


@pytest.fixture(scope="module")
def data(digits):
    X, y, X_test, _ = digits
    return X[:60], y[:60], X_test[:100]


def _clf(**kw):
    base = dict(TINY, device=str(DEVICE), max_epochs=3, lr=0.002)
    base.update(kw)
    return CLIPAdapterClassifier(**base)


def _params_on(clf):
    return {p.device.type for p in clf.model_.parameters()}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_mixed_precision_predict_agrees_with_fp32(data, tmp_path, adapter, precision):
    X, y, X_test = data
    ref = _clf(adapter=adapter, precision="fp32").fit(X, y)
    p_ref = ref.predict_proba(X_test)
    ref.save_adapter(tmp_path / "a.safetensors")
    mixed = _clf(adapter=adapter, precision=precision).load_adapter(tmp_path / "a.safetensors")
    assert _params_on(mixed) == {DEVICE.type}
    p = mixed.predict_proba(X_test)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert np.abs(p - p_ref).max() <= PREDICT_TOL[precision]
    if ON_CUDA:  # autocast really ran: some rounding shows
        assert not np.array_equal(p, p_ref)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_mixed_precision_fit_agrees_with_fp32(data, adapter, precision):
    X, y, X_test = data
    p_ref = _clf(adapter=adapter, precision="fp32").fit(X, y).predict_proba(X_test)
    clf = _clf(adapter=adapter, precision=precision).fit(X, y)
    assert clf.device_.type == DEVICE.type
    assert all(np.isfinite(h["loss"]) for h in clf.history_)
    assert all(p.dtype == torch.float32 for p in clf.model_.adapter_parameters())
    p = clf.predict_proba(X_test)
    assert np.abs(p - p_ref).max() <= FIT_TOL[precision]


class _SpyScaler(torch.amp.GradScaler):
    made: list = []

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        _SpyScaler.made.append(self)
        self.n_scaled = 0

    def scale(self, outputs):
        self.n_scaled += 1
        return super().scale(outputs)


@pytest.mark.parametrize("adapter", ["prompt", "lora"])
def test_fp16_trains_through_the_grad_scaler(data, monkeypatch, adapter):
    X, y, _ = data
    monkeypatch.setattr(_SpyScaler, "made", [])
    monkeypatch.setattr(torch.amp, "GradScaler", _SpyScaler)
    start = _clf(adapter=adapter, precision="fp16", max_epochs=0).fit(X, y)
    # 18 steps: the scaler skips the first ones while its scale (2**16) overflows fp16
    clf = _clf(adapter=adapter, precision="fp16", batch_size=10, lr=0.01).fit(X, y)
    before, after = start.model_.adapter_state_dict(), clf.model_.adapter_state_dict()
    # at least one optimiser step got through the scaler (it skips steps with inf grads)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(bool(torch.isfinite(t).all()) for t in after.values())
    if ON_CUDA:
        (scaler,) = _SpyScaler.made
        assert scaler.is_enabled()
        assert scaler.n_scaled == 6 * 3  # 60 images in batches of 10, 3 epochs
        assert 0 < scaler.get_scale() < float("inf")
    else:  # float32 on the CPU: no scaler
        assert _SpyScaler.made == []
    # bf16 needs no scaler
    _SpyScaler.made.clear()
    _clf(adapter=adapter, precision="bf16", max_epochs=1).fit(X, y)
    assert _SpyScaler.made == []


_LOAD_ON_CPU = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np, torch
    assert not torch.cuda.is_available()
    with open(sys.argv[1], "rb") as f:
        clf = pickle.load(f)
    assert clf.device_.type == "cpu", clf.device_
    assert {p.device.type for p in clf.model_.parameters()} == {"cpu"}
    np.save(sys.argv[3], clf.predict_proba(np.load(sys.argv[2])))
    """
)


@pytest.mark.parametrize("precision", ["fp32", "auto"] if ON_CUDA else ["auto"])
def test_cuda_pickle_loads_and_predicts_on_a_cpu_only_process(data, tmp_path, precision):
    X, y, X_test = data
    clf = _clf(adapter="prompt+lora", precision=precision).fit(X, y)
    p = clf.predict_proba(X_test)
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X_test)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    subprocess.run(
        [sys.executable, "-c", _LOAD_ON_CPU, str(tmp_path / "clf.pkl"), str(tmp_path / "X.npy"),
         str(tmp_path / "p.npy")],
        env=env, check=True, timeout=300,
    )
    p_cpu = np.load(tmp_path / "p.npy")
    # fp32 on both sides: only kernel rounding; "auto" ran bf16 on CUDA, fp32 on the CPU
    tol = 1e-4 if precision == "fp32" or not ON_CUDA else PREDICT_TOL["bf16"]
    np.testing.assert_allclose(p_cpu, p, atol=tol)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_merged_lora_on_cuda_matches_unmerged_and_restores_weights(data, monkeypatch,
                                                                     precision):
    X, y, X_test = data
    clf = _clf(adapter="lora", lora_towers="both", precision=precision, lr=0.05).fit(X, y)
    peft = clf.model_.peft
    base = {n: p.detach().clone() for n, p in peft.named_parameters() if ".base_layer." in n}
    assert base and {p.device.type for p in base.values()} == {DEVICE.type}
    merges = []
    original = peft.merge_adapter
    monkeypatch.setattr(peft, "merge_adapter",
                        lambda *a, **k: (merges.append(1), original(*a, **k))[1])
    merged = clf.predict_proba(X_test)
    assert merges, "predict_proba did not merge the LoRA weights"
    after = dict(peft.named_parameters())
    for n, t in base.items():  # the base weights came back bit for bit, on the device
        assert after[n].device.type == DEVICE.type
        assert torch.equal(after[n].detach(), t), n
    monkeypatch.setattr(clf.model_, "merged", contextlib.nullcontext)
    unmerged = clf.predict_proba(X_test)
    tol = 1e-4 if precision == "fp32" else PREDICT_TOL["bf16"]
    np.testing.assert_allclose(merged, unmerged, atol=tol)
    if precision == "fp32":  # the comparison means something: LoRA moved the scores
        zero = _clf(adapter="lora", lora_towers="both", precision=precision, max_epochs=0)
        zero_p = zero.fit(X, y).predict_proba(X_test)
        assert np.abs(zero_p - merged).max() > max(1e-3, 100 * np.abs(merged - unmerged).max())


def test_feature_cache_on_cuda(data):
    X, y, X_test = data
    cache = get_feature_cache()
    cache.clear()
    clf = _clf(adapter="prompt", precision="auto").fit(X, y)
    s0 = cache.stats()
    assert s0["stores"] == len(X) and s0["misses"] == len(X)
    p1 = clf.predict_proba(X_test)
    s1 = cache.stats()
    assert s1["stores"] - s0["stores"] == len(X_test)
    p2 = clf.predict_proba(X_test)  # all hits, the same scores
    s2 = cache.stats()
    assert s2["hits"] - s1["hits"] == len(X_test) and s2["stores"] == s1["stores"]
    np.testing.assert_array_equal(p1, p2)
    # the cache changes nothing: the same model without it gives the same scores
    nocache = _clf(adapter="prompt", precision="auto", feature_cache=False).fit(X, y)
    np.testing.assert_allclose(nocache.predict_proba(X_test), p1, atol=1e-6)
    if ON_CUDA:
        # another device or precision is another cache space: no features shared
        s3 = cache.stats()
        for kw in (dict(device="cpu"), dict(precision="fp32")):
            _clf(adapter="prompt", max_epochs=0, **kw).fit(X, y).predict_proba(X_test)
            s4 = cache.stats()
            assert s4["misses"] - s3["misses"] == len(X_test)
            s3 = s4


def test_pinned_copies_and_preprocessing_on_the_device():
    from skpeal._runtime import to_device
    from skpeal.backbones import load_backbone
    from skpeal.images import Preprocessor, check_images

    rng = np.random.default_rng(0)
    t = torch.as_tensor(rng.standard_normal((64, 3, 8, 8)), dtype=torch.float32)
    moved = to_device(t, DEVICE)
    assert moved.device.type == DEVICE.type
    if ON_CUDA:
        torch.cuda.synchronize()
    torch.testing.assert_close(moved.cpu(), t, rtol=0, atol=0)
    # array images are copied as uint8 and resized on the device: the CPU's result
    b = load_backbone("skpeal-tiny", None, shared=True)
    pre = Preprocessor(b.image_size, b.mean, b.std, b.interpolation, b.resize_mode)
    X = rng.integers(0, 256, size=(12, 45, 40, 3), dtype=np.uint8)  # resized and cropped
    source = check_images(X)
    on_device = source.batch(np.arange(12), pre, device=DEVICE)
    assert on_device.device.type == DEVICE.type
    assert on_device.shape == (12, 3, b.image_size, b.image_size)
    torch.testing.assert_close(on_device.cpu(), source.batch(np.arange(12), pre),
                               rtol=0, atol=1e-4)
