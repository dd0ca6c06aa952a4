import pytest
import torch

from skpeal.adapters import PromptLearner, attach_lora, resolve_lora_targets, text_encoder_for
from skpeal.backbones import TINY_MODEL, load_backbone


@pytest.fixture()
def tiny():
    return load_backbone(TINY_MODEL)


def test_prompt_with_ctx_init_reproduces_encode_text(tiny):
    names = ["cat", "traffic light", "dog"]
    pl = PromptLearner(text_encoder_for(tiny.model), tiny.tokenizer, names, ctx_init="a photo of a")
    assert pl.n_ctx == 4 and pl.ctx.shape == (3, 4, 32)
    with torch.no_grad():
        ours = pl()
        ref = tiny.model.encode_text(tiny.tokenizer([f"a photo of a {n}." for n in names]))
    torch.testing.assert_close(ours, ref)


def test_prompt_shared_context_and_gradient_reaches_ctx_only(tiny):
    gen = torch.Generator().manual_seed(0)
    pl = PromptLearner(text_encoder_for(tiny.model), tiny.tokenizer, ["a", "b"], n_ctx=3,
                       class_specific=False, generator=gen)
    assert pl.ctx.shape == (3, 32)
    assert float(pl.ctx.detach().std()) == pytest.approx(0.02, rel=0.5)
    pl().sum().backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


def test_prompt_too_long_for_context(tiny):
    with pytest.raises(ValueError, match="context length"):
        PromptLearner(text_encoder_for(tiny.model), tiny.tokenizer, ["cat"], n_ctx=16)


def test_resolve_lora_targets(tiny):
    m = tiny.model
    assert resolve_lora_targets(m, "both", "attention") == [
        "transformer.resblocks.0.attn", "visual.transformer.resblocks.0.attn"]
    assert resolve_lora_targets(m, "vision", "mlp") == [
        "visual.transformer.resblocks.0.mlp.c_fc", "visual.transformer.resblocks.0.mlp.c_proj"]
    assert len(resolve_lora_targets(m, "text", "attention+mlp")) == 3
    assert resolve_lora_targets(m, "vision", [r".*attn"]) == ["visual.transformer.resblocks.0.attn"]
    with pytest.raises(ValueError, match="matches no module in the vision"):
        resolve_lora_targets(m, "vision", [r"transformer\..*"])
    with pytest.raises(ValueError, match="lora_towers"):
        resolve_lora_targets(m, "image", "attention")
    with pytest.raises(ValueError, match="lora_targets"):
        resolve_lora_targets(m, "both", "everything")


def test_attach_lora_trains_only_adapters_and_changes_outputs(tiny):
    x = torch.rand(2, 3, 32, 32)
    tokens = tiny.tokenizer(["a cat"])
    with torch.no_grad():
        img0, txt0 = tiny.model.encode_image(x), tiny.model.encode_text(tokens)
    peft_model = attach_lora(tiny.model, r=2, towers="both", targets="attention+mlp")
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base = peft_model.get_base_model()
    with torch.no_grad():  # lora_B starts at zero: outputs unchanged
        torch.testing.assert_close(base.encode_image(x), img0)
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        assert not torch.allclose(base.encode_image(x), img0)
        assert not torch.allclose(base.encode_text(tokens), txt0)


def test_attach_lora_validates(tiny):
    with pytest.raises(ValueError, match="lora_r"):
        attach_lora(tiny.model, r=0)
    with pytest.raises(ValueError, match="lora_dropout"):
        attach_lora(tiny.model, dropout=1.5)


@pytest.mark.parametrize("towers", ["text", "vision"])
def test_attach_lora_adapts_only_the_chosen_tower(tiny, towers):
    peft_model = attach_lora(tiny.model, towers=towers, targets="attention+mlp")
    adapted = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    in_vision = {n for n in adapted if ".visual." in n}
    assert adapted
    assert (in_vision == adapted) if towers == "vision" else not in_vision


def test_backbone_defaults_fill_a_tower_without_the_named_group():
    from torch import nn

    class ConvText(nn.Module):  # a convolutional image tower and an attention text tower
        def __init__(self):
            super().__init__()
            self.visual = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
            self.transformer = nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2)})

    m = ConvText()
    with pytest.raises(ValueError, match="vision"):
        resolve_lora_targets(m, "both", "attention")
    defaults = {"vision": [r"visual\.2"]}
    assert resolve_lora_targets(m, "both", "attention", defaults) == [
        "transformer.attn", "visual.2"]
    # explicit patterns are taken as they are
    with pytest.raises(ValueError, match="vision"):
        resolve_lora_targets(m, "both", [r"transformer\.attn"], defaults)
    peft_model = attach_lora(m, towers="vision", defaults=defaults)
    adapted = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert adapted and all("visual.2" in n for n in adapted)


def test_prompt_padding_is_cut_without_changing_features(tiny):
    """Positions after the longest prompt are cut; the features stay those of the full
    sequence (causal mask + end-token pooling), with learned (random) context too."""
    enc = text_encoder_for(tiny.model)
    names = ["cat", "traffic light"]
    gen = torch.Generator().manual_seed(0)
    pl = PromptLearner(enc, tiny.tokenizer, names, n_ctx=4, generator=gen)
    full = tiny.tokenizer([f"X X X X {n}." for n in names])
    assert pl.tokens.shape[1] < full.shape[1]
    assert pl.tokens.shape[1] == int((full != 0).sum(dim=1).max())
    torch.testing.assert_close(pl.tokens, full[:, : pl.tokens.shape[1]])
    with torch.no_grad():
        emb = enc.token_embeddings(full)
        emb[:, 1:5] = pl.ctx
        want = enc.encode(emb, full)
        torch.testing.assert_close(pl(), want, rtol=1e-5, atol=1e-6)


def test_prompt_padding_kept_when_padding_can_matter(tiny, monkeypatch):
    enc = text_encoder_for(tiny.model)
    monkeypatch.setattr(tiny.model, "text_pool_type", "last")
    assert enc.needed_length(tiny.tokenizer(["a cat."])) is None
    pl = PromptLearner(enc, tiny.tokenizer, ["cat"], n_ctx=2)
    assert pl.tokens.shape[1] == tiny.tokenizer(["x"]).shape[1]
    monkeypatch.setattr(tiny.model, "text_pool_type", "argmax")
    monkeypatch.setattr(tiny.model, "attn_mask", None)
    assert enc.needed_length(tiny.tokenizer(["a cat."])) is None
