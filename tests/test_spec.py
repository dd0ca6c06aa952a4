"""skpeal._spec: what a fit uses, built once from validated params."""

import dataclasses

import numpy as np
import pytest
import torch

from skpeal import CLIPAdapterClassifier
from skpeal._spec import STRUCTURAL, FitSpec
from skpeal.adapters import adapter_kind


def _spec(**kw):
    est = CLIPAdapterClassifier(model="skpeal-tiny", pretrained=None, **kw)
    return FitSpec.from_params(est._validated_params(), seed=7, classnames=["a", "b"])


def test_spec_holds_every_validated_param_once():
    spec = _spec(lr=0.5, lora_r=3, calibration_warmup=None, templates="{}!")
    assert spec.train.lr == 0.5 and spec.adapter.lora_r == 3 and spec.seed == 7
    assert spec.train.calibration_warmup == 0.0 and spec.templates == ("{}!",)
    assert spec.classnames == ("a", "b") and spec.runtime.device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1
    names = {f.name for part in (spec.adapter, spec.train, spec.runtime)
             for f in dataclasses.fields(part)}
    covered = names | {"model", "pretrained", "templates", "warm_start", "verbose", "adapter"}
    params = set(CLIPAdapterClassifier().get_params())
    # everything but what fit resolves separately (classes, names, seed)
    assert params - covered == {"classes", "classnames", "random_state"}


def test_structure_is_json_ready_and_decides_warm_starts():
    a, b = _spec(lora_targets=("attn",)), _spec(lora_targets=("attn",), lora_dropout=0.5)
    assert list(a.structure()) == list(STRUCTURAL)
    assert a.structure()["lora_targets"] == ["attn"] and a.structure() == b.structure()
    assert _spec(n_ctx=3).structure() != a.structure()
    assert a.on_device(torch.device("cpu")) == a
    prompt_kw = {"n_ctx", "ctx_init", "class_specific", "class_token_position"}

    def kwargs(spec):  # the build keywords the kind's record reads from the spec
        return adapter_kind(spec.adapter.kind).module_kwargs(spec.adapter)

    assert kwargs(a).keys() == prompt_kw
    lora_kw = {"r", "alpha", "dropout", "towers", "targets"}
    assert kwargs(_spec(adapter="prompt+lora")).keys() == prompt_kw | lora_kw
    assert _spec(class_token_position="front").structure() != a.structure()
    assert np.isclose(kwargs(_spec(adapter="lora"))["dropout"], 0.25)
