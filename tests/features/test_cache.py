"""The frozen-tower feature cache, streamed inference, merged LoRA inference."""

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone

from skpeal import CLIPAdapterClassifier
from skpeal.backbones import TINY_MODEL, load_backbone, register_backbone
from skpeal.features import FeatureCache, clear_feature_cache, get_feature_cache
from skpeal.features.cache import ENTRY_OVERHEAD
from skpeal.features.keys import module_digest
from skpeal.images import check_images, file_key
from skpeal.nn import AdaptedCLIP
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def _empty_cache():
    clear_feature_cache()
    yield
    clear_feature_cache()


@pytest.fixture
def encoded(monkeypatch):
    """Counts the images that go through any model's image tower."""
    calls = {"images": 0, "batches": 0}
    original = AdaptedCLIP.image_features

    def counting(self, images):
        calls["images"] += len(images)
        calls["batches"] += 1
        return original(self, images)

    monkeypatch.setattr(AdaptedCLIP, "image_features", counting)
    return calls


def _row(value, d=4):
    return torch.full((d,), float(value))


# ------------------------------------------------------------------ the store itself


def test_cache_get_put_and_counters():
    c = FeatureCache(max_bytes=10_000)
    assert c.get_many("s", [b"a", b"b"]) == [None, None]
    assert c.put_many("s", [b"a", b"b"], torch.stack([_row(1), _row(2)])) == 2
    got = c.get_many("s", [b"b", b"x", b"a"])
    assert torch.equal(got[0], _row(2)) and got[1] is None and torch.equal(got[2], _row(1))
    assert c.get_many("other", [b"a"]) == [None]  # spaces are separate
    s = c.stats()
    assert (s["hits"], s["misses"], s["stores"], s["entries"]) == (2, 4, 2, 2)
    assert s["nbytes"] == c.nbytes == 2 * (16 + ENTRY_OVERHEAD)
    assert c.put_many("s", [b"a"], [_row(9)]) == 0  # an existing entry is kept
    assert torch.equal(c.get_many("s", [b"a"])[0], _row(1))
    c.clear()
    assert len(c) == 0 and c.nbytes == 0 and c.stats()["hits"] == 0
    with pytest.raises(ValueError, match="2 keys but 1 rows"):
        c.put_many("s", [b"a", b"b"], [_row(1)])


def test_cache_budget_evicts_other_spaces_lru_first_and_never_thrashes_its_own():
    size = 16 + ENTRY_OVERHEAD
    c = FeatureCache(max_bytes=4 * size)
    c.put_many("old", [b"1"], [_row(1)])
    c.put_many("mid", [b"1"], [_row(1)])
    c.get_many("old", [b"1"])  # "old" is now more recent than "mid"
    assert c.put_many("new", [b"1", b"2"], [_row(1), _row(2)]) == 2
    assert c.stats()["spaces"] == 3 and c.nbytes == 4 * size
    c.put_many("new", [b"3"], [_row(3)])  # "mid" (least recently used) goes first
    assert c.get_many("mid", [b"1"]) == [None] and c.get_many("old", [b"1"])[0] is not None
    # a space larger than the budget keeps what it stored first, stores nothing more
    assert c.put_many("new", [b"4", b"5", b"6"], [_row(4), _row(5), _row(6)]) == 1
    assert c.get_many("old", [b"1"]) == [None]
    assert [r is not None for r in c.get_many("new", [b"1", b"2", b"3", b"4", b"5"])] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert c.nbytes <= c.max_bytes and c.stats()["evictions"] == 2
    c.max_bytes = 0  # lowering the budget drops what does not fit
    assert len(c) == 0 and c.put_many("x", [b"1"], [_row(1)]) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        c.max_bytes = -1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 6), st.integers(1, 5)), max_size=40),
    st.integers(0, 12),
)
def test_cache_never_exceeds_its_budget_and_returns_what_was_stored(ops, budget_rows):
    c = FeatureCache(max_bytes=budget_rows * (16 + ENTRY_OVERHEAD))
    truth = {}
    for space, key, value in ops:
        k = bytes([key])
        stored = c.put_many(space, [k], [_row(value)])
        if stored:  # stored only when absent: an earlier value was evicted
            truth[(space, k)] = _row(value)
        assert c.nbytes <= c.max_bytes
    for (space, k), row in truth.items():
        got = c.get_many(space, [k])[0]
        assert got is None or torch.equal(got, row)  # evicted or exactly what was stored


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv("SKPEAL_FEATURE_CACHE_MB", "2")
    assert FeatureCache().max_bytes == 2 * 2**20
    monkeypatch.setenv("SKPEAL_FEATURE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="SKPEAL_FEATURE_CACHE_MB"):
        FeatureCache()
    assert get_feature_cache() is get_feature_cache()


# ------------------------------------------------------------------ fingerprints


def test_module_digest_sees_every_weight_and_buffer():
    a, b = load_backbone(TINY_MODEL).model.visual, load_backbone(TINY_MODEL).model.visual
    assert module_digest(a) == module_digest(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert module_digest(a) != module_digest(b)
    bn = torch.nn.BatchNorm1d(3).eval()
    d0 = module_digest(bn)
    bn.running_mean[1] = 0.5
    assert module_digest(bn) != d0


def test_image_fingerprints_follow_content_not_layout(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    fp = check_images(X).fingerprints()
    assert len(set(fp)) == 3
    # same pixels as a channels-first tensor or inside a bigger array: same digests
    assert check_images(torch.from_numpy(X).permute(0, 3, 1, 2)).fingerprints() == fp
    assert check_images(np.concatenate([X, X[:1]])).fingerprints()[:3] == fp
    Y = X.copy()
    Y[1, 4, 4, 2] ^= 1  # one bit of one pixel
    fy = check_images(Y).fingerprints()
    assert fy[0] == fp[0] and fy[1] != fp[1] and fy[2] == fp[2]
    assert check_images(X.astype(np.float32) / 255).fingerprints()[0] != fp[0]  # other dtype
    pil = [Image.fromarray(a) for a in X]
    assert check_images(pil).fingerprints() == check_images(pil).fingerprints()
    assert check_images(pil).fingerprints()[0] != check_images(pil[1:]).fingerprints()[0]
    path = tmp_path / "a.png"
    Image.fromarray(X[0]).save(path)
    k0 = check_images([str(path)]).fingerprints()[0]
    assert check_images([path]).fingerprints()[0] == k0
    Image.fromarray(Y[1]).save(path)
    os.utime(path, ns=(1, 1))  # a rewrite is seen by size, mtime and inode
    assert check_images([str(path)]).fingerprints()[0] != k0
    assert file_key("not-a-file-tag") == ("not-a-file-tag",)


# ------------------------------------------------------------------ the estimator


def test_frozen_tower_images_are_encoded_once_across_epochs_fits_clones_and_predictions(
    small_images, encoded
):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=3).fit(X, y)
    assert encoded["images"] == 40  # once for three epochs
    proba = est.predict_proba(X)
    est.embed(X)
    est.predict_proba_embed(X)
    est.predict(X)
    assert encoded["images"] == 40  # predictions hit the cache
    again = clone(est).set_params(random_state=1, max_epochs=2).fit(X[::2], y[::2])
    again.predict_proba(X)
    assert encoded["images"] == 40  # a fresh clone, another seed, a subset: all hits
    est.predict_proba(X[:5][::-1].copy())
    assert encoded["images"] == 40
    stats = get_feature_cache().stats()
    assert stats["entries"] == 40 and stats["misses"] == 40 and stats["hits"] >= 5 * 40
    # prediction stays the one of the uncached path
    plain = CLIPAdapterClassifier(**TINY, max_epochs=3, feature_cache=False).fit(X, y)
    np.testing.assert_allclose(plain.predict_proba(X), proba, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(plain.embed(X), est.embed(X), rtol=1e-6, atol=1e-7)


def test_uncached_path_encodes_every_epoch_and_call(small_images, encoded):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=3, feature_cache=False).fit(X, y)
    assert encoded["images"] == 3 * 40
    est.predict_proba(X)
    est.predict_proba(X)
    assert encoded["images"] == 5 * 40
    assert get_feature_cache().stats()["entries"] == 0


@pytest.mark.parametrize(
    "adapter, towers, cached",
    [
        ("lora", "text", True),
        ("lora", "vision", False),
        ("lora", "both", False),
    ],
)
def test_lora_uses_the_cache_only_with_a_frozen_image_tower(
    small_images, encoded, adapter, towers, cached
):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, adapter=adapter, lora_towers=towers, max_epochs=2).fit(X, y)
    before = encoded["images"]
    est.predict_proba(X)
    est.predict_proba(X)
    assert (encoded["images"] - before == 0) if cached else (encoded["images"] - before == 80)
    assert (get_feature_cache().stats()["entries"] > 0) == cached


def test_changed_pixels_miss_and_give_fresh_features(small_images, encoded):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=1).fit(X, y)
    feats = est.embed(X)
    X2 = X.copy()
    X2[7] = 255 - X2[7]
    before = encoded["images"]
    feats2 = est.embed(X2)
    assert encoded["images"] - before == 1  # only the changed image is encoded
    assert not np.allclose(feats2[7], feats[7])
    np.testing.assert_array_equal(np.delete(feats2, 7, 0), np.delete(feats, 7, 0))
    fresh = CLIPAdapterClassifier(**TINY, max_epochs=1, feature_cache=False).fit(X, y)
    np.testing.assert_allclose(feats2, fresh.embed(X2), rtol=1e-6, atol=1e-7)


def test_changed_backbone_weights_file_or_preprocessing_never_hit(small_images, tmp_path, encoded):
    X, y = small_images
    base = CLIPAdapterClassifier(**TINY, max_epochs=0).fit(X, y)
    f_base = base.embed(X)
    n = encoded["images"]
    # other weights: a checkpoint file, then the same file rewritten with other weights
    src = load_backbone(TINY_MODEL)
    path = tmp_path / "tiny.pt"
    for shift in (0.01, 0.02):
        with torch.no_grad():
            for p in src.model.parameters():
                p.add_(shift)
        torch.save({k: v.contiguous() for k, v in src.model.state_dict().items()}, path)
        est = CLIPAdapterClassifier(**{**TINY, "pretrained": str(path)}, max_epochs=0).fit(X, y)
        f = est.embed(X)
        assert encoded["images"] - n == 40 and not np.allclose(f, f_base)
        n = encoded["images"]
        ref = CLIPAdapterClassifier(
            **{**TINY, "pretrained": str(path)}, max_epochs=0, feature_cache=False
        ).fit(X, y)
        np.testing.assert_allclose(f, ref.embed(X), rtol=1e-6, atol=1e-7)
        n = encoded["images"]

    # same weights, other preprocessing (normalisation)
    def other_norm(pretrained):
        b = load_backbone(TINY_MODEL, pretrained)
        b.mean, b.std = (0.4, 0.4, 0.4), (0.2, 0.2, 0.2)
        return b

    register_backbone("skpeal-tiny-other-norm", other_norm)
    est = CLIPAdapterClassifier(**{**TINY, "model": "skpeal-tiny-other-norm"}, max_epochs=0).fit(
        X, y
    )
    f = est.embed(X)
    assert encoded["images"] - n == 40 and not np.allclose(f, f_base)
    # the original backbone still hits its own entries
    n = encoded["images"]
    np.testing.assert_array_equal(
        CLIPAdapterClassifier(**TINY, max_epochs=0).fit(X, y).embed(X), f_base
    )
    assert encoded["images"] == n
    assert get_feature_cache().stats()["spaces"] == 4


def test_augmented_views_are_a_fixed_number_per_image_and_cached(small_images, encoded):
    X, y = small_images
    kw = dict(TINY, augment=True, augment_views=2, max_epochs=6)
    est = CLIPAdapterClassifier(**kw).fit(X, y)
    assert 40 < encoded["images"] <= 2 * 40  # at most 2 views per image, over 6 epochs
    assert get_feature_cache().stats()["entries"] == encoded["images"]
    n = encoded["images"]
    other = clone(est).set_params(random_state=3).fit(X, y)
    assert encoded["images"] - n <= 2 * 40 - n  # only views not drawn before are new
    assert get_feature_cache().stats()["entries"] <= 2 * 40
    # views do not depend on caching: the same fit without the cache gives the same model
    n = encoded["images"]
    plain = CLIPAdapterClassifier(**kw, feature_cache=False).fit(X, y)
    assert encoded["images"] - n == 6 * 40  # one view per image and epoch, re-encoded
    np.testing.assert_allclose(plain.predict_proba(X), est.predict_proba(X), rtol=1e-5, atol=1e-7)
    assert not np.allclose(other.predict_proba(X), est.predict_proba(X))


def test_augment_scale_gives_other_views_and_another_model(small_images, encoded):
    X, y = small_images
    kw = dict(TINY, augment=True, augment_views=2, max_epochs=2)
    a = CLIPAdapterClassifier(**kw).fit(X, y)
    n = encoded["images"]
    b = CLIPAdapterClassifier(**kw, augment_scale=(0.08, 1.0)).fit(X, y)
    assert encoded["images"] > n  # the views of another area range are not the cached ones
    assert not np.allclose(a.predict_proba(X), b.predict_proba(X))
    # and the scale reaches the crops of a trained image tower too
    lora = dict(TINY, adapter="lora", lora_towers="vision", augment=True, max_epochs=2)
    c = CLIPAdapterClassifier(**lora).fit(X, y)
    d = CLIPAdapterClassifier(**lora, augment_scale=(0.08, 1.0)).fit(X, y)
    assert not np.allclose(c.predict_proba(X), d.predict_proba(X))


def test_view_recipe_is_seeded_by_content_and_view_index():
    from skpeal.features.keys import view_keys, view_seeds

    fp = check_images(np.arange(2 * 16, dtype=np.uint8).reshape(2, 4, 4)).fingerprints()
    k = view_keys(fp * 2, [0, 0, 1, 1])
    assert len(set(k)) == 4 and set(k).isdisjoint(fp)
    assert view_keys(fp, [1, 1]) == k[2:]
    assert set(view_keys(fp, [1, 1], (0.08, 1.0))).isdisjoint(k)
    s = view_seeds(k)
    assert s.dtype == np.int64 and (s >= 0).all() and len(set(s.tolist())) == 4


def test_zero_budget_still_reuses_features_within_a_fit(small_images, encoded):
    X, y = small_images
    cache = get_feature_cache()
    budget = cache.max_bytes
    cache.max_bytes = 0
    try:
        est = CLIPAdapterClassifier(**TINY, max_epochs=3).fit(X, y)
        assert encoded["images"] == 40 and len(cache) == 0
        est.predict_proba(X)
        assert encoded["images"] == 80
    finally:
        cache.max_bytes = budget


def test_class_text_features_once_not_per_batch_nor_per_call(small_images, monkeypatch):
    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=1, predict_batch_size=8).fit(X, y)
    calls = []
    forward = type(est.model_.prompt).forward
    monkeypatch.setattr(
        type(est.model_.prompt), "forward", lambda self: calls.append(1) or forward(self)
    )
    clear_feature_cache()  # 5 batches really go through the image tower
    est.predict_proba(X)
    assert len(calls) == 1  # once for the 5 batches of the call
    est.predict_proba_embed(X)
    assert len(calls) == 1  # and kept for the next call while the model is unchanged


def _png_files(tmp_path, X):
    paths = []
    for i, a in enumerate(X):
        p = tmp_path / f"{i:03d}.png"
        Image.fromarray(a).save(p)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("adapter", ["prompt", "lora"])
def test_path_inputs_are_streamed_batch_by_batch(small_images, tmp_path, monkeypatch, adapter):
    X, y = small_images
    paths = _png_files(tmp_path, X)
    est = CLIPAdapterClassifier(
        **TINY,
        adapter=adapter,
        lora_towers="vision",
        max_epochs=1,
        predict_batch_size=4,
        num_workers=0,
    ).fit(X, y)
    ref = est.predict_proba(X)
    clear_feature_cache()
    import skpeal.images.input as data_module

    events = []
    load = data_module._load_path
    monkeypatch.setattr(data_module, "_load_path", lambda p: events.append("load") or load(p))
    original = AdaptedCLIP.image_features

    def encode(self, images):
        events.append(("encode", len(images)))
        return original(self, images)

    monkeypatch.setattr(AdaptedCLIP, "image_features", encode)
    proba = est.predict_proba(paths)
    np.testing.assert_allclose(proba, ref, atol=1e-5)
    held = peak = 0  # images decoded and not yet encoded
    for e in events:
        held = held + 1 if e == "load" else held - e[1]
        peak = max(peak, held)
    assert events.count("load") == 40 and peak <= 4


def test_worker_processes_give_the_same_results(small_images, tmp_path):
    X, y = small_images
    paths = _png_files(tmp_path, X)
    kw = dict(TINY, max_epochs=1, predict_batch_size=8, feature_cache=False)
    est = CLIPAdapterClassifier(**kw, num_workers=0).fit(X, y)
    p0 = est.predict_proba(paths)
    p2 = est.set_params(num_workers=2).fit(X, y).predict_proba(paths)
    np.testing.assert_allclose(p2, p0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p0, est.predict_proba(X), atol=1e-5)


def test_augmented_views_of_files_do_not_depend_on_worker_processes(small_images, tmp_path):
    X, y = small_images
    paths = _png_files(tmp_path, X)
    kw = dict(
        TINY, augment=True, augment_views=2, max_epochs=2, feature_cache=False, predict_batch_size=8
    )
    a = CLIPAdapterClassifier(**kw, num_workers=0).fit(paths, y).predict_proba(X)
    b = CLIPAdapterClassifier(**kw, num_workers=2).fit(paths, y).predict_proba(X)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lora_merged_inference_matches_unmerged_and_restores_weights_exactly(small_images):
    X, y = small_images
    est = CLIPAdapterClassifier(
        **TINY,
        adapter="lora",
        lora_targets="attention+mlp",
        optimizer="adamw",
        lr=0.05,
        max_epochs=2,
    ).fit(X, y)
    model = est.model_
    with torch.no_grad():  # (peft's attention LoRA merges and unmerges inside this forward)
        unmerged = model.logits(
            model.image_features(
                est._preprocess(torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255)
            ),
            model.text_features(),
        )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    proba = est.predict_proba(X)
    after = {n: p.detach() for n, p in model.named_parameters()}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)  # bit for bit
    np.testing.assert_allclose(proba, torch.softmax(unmerged.double(), 1).numpy(), atol=1e-5)
    with model.merged() as m:
        assert m.saved  # merging happened
        merged_w = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert any(not torch.equal(merged_w[n], before[n]) for n in before if n in merged_w)


def test_pickled_estimator_rebuilds_and_hits_the_cache(small_images, encoded):
    import pickle

    X, y = small_images
    est = CLIPAdapterClassifier(**TINY, max_epochs=1).fit(X, y)
    proba = est.predict_proba(X)
    n = encoded["images"]
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(back.predict_proba(X), proba, atol=1e-7)
    assert encoded["images"] == n


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(feature_cache="yes"), "feature_cache"),
        (dict(augment_views=0), "augment_views"),
        (dict(num_workers=-1), "num_workers"),
        (dict(num_workers=1.5), "num_workers"),
    ],
)
def test_bad_cache_params(small_images, params, match):
    X, y = small_images
    with pytest.raises(ValueError, match=match):
        CLIPAdapterClassifier(**{**TINY, **params}).fit(X, y)


def test_automatic_workers_only_use_cores_the_model_leaves_free(small_images, tmp_path):
    from skpeal._runtime import resolve_workers

    X, _ = small_images
    files = check_images(_png_files(tmp_path, X))
    cores = len(os.sched_getaffinity(0))
    assert resolve_workers(None, files, 40, 8, "cpu") == max(
        0, min(4, cores - torch.get_num_threads())
    )
    assert resolve_workers(None, files, 40, 8, "cuda") == max(0, min(4, cores - 1))
    assert resolve_workers(None, files, 16, 8, "cpu") == 0  # two batches: not worth a worker
    assert resolve_workers(None, check_images(X), 40, 8, "cuda") == 0  # nothing to decode
    assert resolve_workers(3, files, 40, 8, "cpu") == 3


def test_rows_are_copied_into_shared_blocks():
    """Stored rows are copies held in a few large blocks, not the caller's tensors."""
    c = FeatureCache(max_bytes=2**30)
    batch = torch.arange(12.0).view(3, 4)
    c.put_many("s", [b"a", b"b", b"c"], batch.unbind(0))
    batch.zero_()  # the caller's tensor may be reused or freed
    rows = c.get_many("s", [b"a", b"b", b"c"])
    torch.testing.assert_close(torch.stack(rows), torch.arange(12.0).view(3, 4))
    storages = {r.untyped_storage().data_ptr() for r in rows}
    assert len(storages) == 1 and storages != {batch.untyped_storage().data_ptr()}
    more = [i.to_bytes(2, "little") for i in range(100, 400)]
    c.put_many("s", more, torch.ones(300, 4).unbind(0))
    all_rows = c.get_many("s", more)
    assert len({r.untyped_storage().data_ptr() for r in all_rows}) == 2  # 256 rows, then more
    assert c.nbytes == 303 * (16 + ENTRY_OVERHEAD)


def test_blocks_never_reserve_more_than_the_budget():
    size = 16 + ENTRY_OVERHEAD
    c = FeatureCache(max_bytes=5 * size)
    assert c.put_many("s", [bytes([i]) for i in range(9)], torch.ones(9, 4).unbind(0)) == 5
    (row,) = c.get_many("s", [b"\x00"])
    assert row.untyped_storage().nbytes() == 5 * 16


def test_release_free_memory_runs_here():
    import platform

    from skpeal._runtime import release_free_memory

    result = release_free_memory()
    assert isinstance(result, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        from skpeal import _runtime

        assert _runtime._malloc_trim()  # resolved, so the trimming really happens here


def test_long_passes_release_free_memory(monkeypatch):
    """The encoder hands freed memory back every TRIM_EVERY_IMAGES images."""
    import skpeal.features.encoder as enc

    calls = []
    monkeypatch.setattr(enc, "TRIM_EVERY_IMAGES", 10)
    monkeypatch.setattr(enc, "release_free_memory", lambda: calls.append(1) or True)
    X = np.random.default_rng(0).integers(0, 255, (25, 16, 16, 3), dtype=np.uint8)
    est = CLIPAdapterClassifier(**TINY, classes=[0, 1], max_epochs=0, feature_cache=False,
                                predict_batch_size=4).fit(X[:2])
    calls.clear()
    est.predict_proba(X)
    assert len(calls) == 2  # after images 12 (>= 10) and 20 (>= 20) of 25
