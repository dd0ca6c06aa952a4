"""Process-wide reuse of a backbone's frozen weights across fits (``shared=True``)."""

import os

import numpy as np
import pytest
import torch

from skpeal import CLIPAdapterClassifier
from skpeal.backbones import TINY_MODEL, clear_backbone_cache, load_backbone, registry

from ..conftest import TINY

LORA = dict(TINY, adapter="lora", lora_towers="both", lora_r=2, max_epochs=2)
PROMPT = dict(TINY, max_epochs=2)


def _template_state():
    (template,) = [b for k, b in registry._TEMPLATES.items() if k[0] == TINY_MODEL]
    return {n: t for n, t in template.model.state_dict().items()}


@pytest.fixture(autouse=True)
def _clean_cache():
    clear_backbone_cache()
    yield
    clear_backbone_cache()


def test_shared_copies_are_fresh_trees_over_the_same_weights():
    a = load_backbone(TINY_MODEL, shared=True)
    b = load_backbone(TINY_MODEL, shared=True)
    assert a.model is not b.model
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert pa.keys() == pb.keys()
    for n in pa:
        assert pa[n] is not pb[n]  # own Parameter objects ...
        assert pa[n].data_ptr() == pb[n].data_ptr()  # ... over one storage
        assert not pa[n].requires_grad
    assert not a.model.training
    # a fresh build (the default) owns its tensors and equals the shared ones
    c = load_backbone(TINY_MODEL)
    for n, p in c.model.named_parameters():
        assert p.data_ptr() != pa[n].data_ptr() and torch.equal(p, pa[n])


def test_replacing_a_module_in_one_copy_leaves_the_other():
    a = load_backbone(TINY_MODEL, shared=True)
    b = load_backbone(TINY_MODEL, shared=True)
    a.model.visual = torch.nn.Identity()
    assert not isinstance(b.model.visual, torch.nn.Identity)
    assert not isinstance(load_backbone(TINY_MODEL, shared=True).model.visual, torch.nn.Identity)


def test_clear_backbone_cache_builds_anew():
    a = load_backbone(TINY_MODEL, shared=True)
    clear_backbone_cache()
    b = load_backbone(TINY_MODEL, shared=True)
    pa, pb = next(a.model.parameters()), next(b.model.parameters())
    assert pa.data_ptr() != pb.data_ptr() and torch.equal(pa, pb)


def test_a_changed_weights_file_is_noticed(tmp_path):
    from safetensors.torch import save_file

    state = {n: t.contiguous() for n, t in load_backbone(TINY_MODEL).model.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    first = load_backbone(TINY_MODEL, str(path), shared=True)
    name = "logit_scale"
    save_file({**state, name: state[name] + 1}, str(path))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load_backbone(TINY_MODEL, str(path), shared=True)
    assert float(second.model.logit_scale) == pytest.approx(float(first.model.logit_scale) + 1)


def test_consecutive_fits_are_identical(small_images):
    X, y = small_images
    first = CLIPAdapterClassifier(**PROMPT).fit(X, y).predict_proba(X)
    second = CLIPAdapterClassifier(**PROMPT).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_lora_after_prompt_equals_a_fresh_build(small_images):
    X, y = small_images
    CLIPAdapterClassifier(**PROMPT).fit(X, y)
    before = {n: t.clone() for n, t in _template_state().items()}
    reused = CLIPAdapterClassifier(**LORA).fit(X, y)
    proba = reused.predict_proba(X)
    # the frozen tensors every fit shares are bit-identical after a LoRA fit and predict
    after = _template_state()
    assert before.keys() == after.keys()
    for n in before:
        assert torch.equal(before[n], after[n]), n
    clear_backbone_cache()
    fresh = CLIPAdapterClassifier(**LORA).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(proba, fresh)


def test_fits_share_the_frozen_weights_no_copy_per_fit(small_images):
    X, y = small_images
    ptrs = None
    for _ in range(5):
        clf = CLIPAdapterClassifier(**dict(PROMPT, max_epochs=1)).fit(X, y)
        frozen = {p.data_ptr() for p in clf.model_.parameters() if not p.requires_grad}
        ptrs = frozen if ptrs is None else ptrs
        assert frozen == ptrs  # the same storages every fit: memory does not grow
    template = {t.data_ptr() for t in _template_state().values()}
    assert ptrs <= template
