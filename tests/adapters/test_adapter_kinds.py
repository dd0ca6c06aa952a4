"""Adapter kinds: parsed once, and one rule for which tower an adapter leaves frozen."""

import itertools

import numpy as np
import pytest

from skpeal import CLIPAdapterClassifier
from skpeal.adapters import (
    adapter_kind,
    adapter_names,
    frozen_towers,
    register_adapter,
)
from skpeal.labeling.loop import image_side_cached
from tests.conftest import TINY

# (adapter, lora_towers) -> (vision_frozen, text_frozen), written out by hand: the prompt
# trains the text side; LoRA trains the towers it is put on.
EXPECTED = {
    ("prompt", "both"): (True, False),
    ("prompt", "vision"): (True, False),  # lora_towers has no effect without LoRA
    ("prompt", "text"): (True, False),
    ("lora", "both"): (False, False),
    ("lora", "vision"): (False, True),
    ("lora", "text"): (True, False),
    ("prompt+lora", "both"): (False, False),
    ("prompt+lora", "vision"): (False, False),  # the prompt still trains the text side
    ("prompt+lora", "text"): (True, False),  # the case two copies of the rule disagreed on
}


def test_every_kind_and_tower_is_covered():
    assert set(EXPECTED) == set(itertools.product(adapter_names(), ("both", "vision", "text")))


@pytest.mark.parametrize("adapter, towers", sorted(EXPECTED))
def test_frozen_tower_rule_is_the_same_everywhere(adapter, towers):
    vision, text = EXPECTED[adapter, towers]
    assert frozen_towers(adapter, towers) == (vision, text)
    est = CLIPAdapterClassifier(**TINY, adapter=adapter, lora_towers=towers, max_epochs=0,
                                classes=["a", "b"])
    assert image_side_cached(est) is vision  # the labelling loop's view (feature cache on)
    assert image_side_cached(est.set_params(feature_cache=False)) is False
    est.fit(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    assert (est.model_.vision_frozen, est.model_.text_frozen) == (vision, text)  # the module


def test_kinds_are_parsed_once_into_their_parts():
    assert adapter_kind("prompt+lora").parts == ("lora", "prompt")
    assert adapter_kind("prompt").parts == ("prompt",)
    names = ("n_ctx", "ctx_init", "class_specific", "class_token_position", "lora_r",
             "lora_alpha", "lora_dropout", "lora_towers", "lora_targets")
    kw = adapter_kind("prompt+lora").module_kwargs({name: name for name in names})
    assert set(kw) == {"n_ctx", "ctx_init", "class_specific", "class_token_position",
                       "r", "alpha", "dropout", "towers", "targets"}
    with pytest.raises(ValueError, match=r"adapter must be one of \('prompt', 'lora'"):
        adapter_kind("lora+prompt")
    with pytest.raises(ValueError, match="lora_towers must be one of"):
        frozen_towers("lora", "image")
    with pytest.raises(ValueError, match="adapter must be one of"):
        CLIPAdapterClassifier(adapter="vpt")._validated_params()


def test_a_new_kind_is_one_registration():
    with pytest.raises(ValueError, match="parts must be"):
        register_adapter("bad", ("prompt", "prompt"))
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("prompt", ("prompt",))
    from skpeal.adapters import _registry

    register_adapter("lora-only-alias", ("lora",))
    try:
        assert "lora-only-alias" in adapter_names()
        est = CLIPAdapterClassifier(**TINY, adapter="lora-only-alias", lora_towers="text",
                                    max_epochs=0, classes=["a", "b"])
        est.fit(np.zeros((1, 32, 32, 3), dtype=np.uint8))
        assert est.model_.peft is not None and est.model_.prompt is None
        assert est.model_.vision_frozen and image_side_cached(est)
    finally:
        _registry.unregister_adapter("lora-only-alias")
