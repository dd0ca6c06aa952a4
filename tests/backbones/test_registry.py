import os
import shutil
import time

import pytest
import torch
from safetensors.torch import save_file

from skpeal.backbones import TINY_MODEL, list_backbones, load_backbone


def _same(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_model_is_deterministic_frozen_and_complete():
    a, b = load_backbone(TINY_MODEL), load_backbone(TINY_MODEL)
    assert _same(a, b)
    assert not any(p.requires_grad for p in a.model.parameters())
    assert not a.model.training
    assert a.image_size == 32 and len(a.mean) == 3
    tokens = a.tokenizer(["a photo of a cat."])
    assert tokens.shape == (1, 16) and int(tokens.max()) < 49408
    assert TINY_MODEL in list_backbones()


def test_random_init_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_backbone(TINY_MODEL)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_local_checkpoint_file_loads_through_open_clip(tmp_path, fmt):
    src = load_backbone(TINY_MODEL)
    with torch.no_grad():  # make the saved weights differ from the seeded random init
        for p in src.model.parameters():
            p.add_(0.01)
    path = tmp_path / f"tiny.{fmt}"
    state = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    if fmt == "pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    loaded = load_backbone(TINY_MODEL, str(path))
    assert _same(src, loaded)
    assert not _same(loaded, load_backbone(TINY_MODEL))


def test_model_config_file_and_local_dir(tmp_path):
    from skpeal import backbones

    cfg = os.path.join(os.path.dirname(backbones.__file__), "model_configs", "skpeal-tiny.json")
    shutil.copy(cfg, tmp_path / "my-tiny.json")
    b = load_backbone(str(tmp_path / "my-tiny.json"))
    assert b.image_size == 32
    folder = tmp_path / "dir"
    folder.mkdir()
    shutil.copy(cfg, folder / "open_clip_config.json")
    # open_clip's local-dir layout wraps the model config
    import json

    json.dump({"model_cfg": json.load(open(cfg))}, open(folder / "open_clip_config.json", "w"))
    torch.save(b.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    c = load_backbone(str(folder))
    assert _same(b, c)


def test_unknown_names_and_tags():
    with pytest.raises(ValueError, match="unknown model"):
        load_backbone("no-such-model")
    with pytest.raises(ValueError, match="known tags"):
        load_backbone("ViT-B-32", "no-such-tag")
    with pytest.raises(ValueError, match="model"):
        load_backbone("")


def test_missing_weights_fail_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError) as err:
        load_backbone("ViT-B-32", "openai")
    assert time.perf_counter() - t0 < 10  # no download retries
    msg = str(err.value)
    assert "pretrained=" in msg and "HF_HUB_OFFLINE" in msg and "file" in msg
