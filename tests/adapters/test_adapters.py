import copy

import pytest
import torch
from torch import nn

from skpeal.adapters import (
    PromptLearner,
    SplitAttention,
    attach_lora,
    resolve_lora_targets,
    split_attention,
    text_encoder_for,
)
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


def test_class_specific_contexts_are_drawn_per_class(tiny):
    gen = torch.Generator().manual_seed(0)
    pl = PromptLearner(text_encoder_for(tiny.model), tiny.tokenizer, ["a", "b", "c"], n_ctx=3,
                       generator=gen)
    assert pl.ctx.shape == (3, 3, 32)
    assert not torch.equal(pl.ctx[0], pl.ctx[1]) and not torch.equal(pl.ctx[1], pl.ctx[2])
    assert float(pl.ctx.detach().std()) == pytest.approx(0.02, rel=0.3)


@pytest.mark.parametrize("position, text", [
    ("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")])
def test_class_token_position_places_the_name_as_coop(tiny, position, text):
    names = ["cat", "traffic light", "dog"]
    pl = PromptLearner(text_encoder_for(tiny.model), tiny.tokenizer, names,
                       ctx_init="a photo of a", class_token_position=position)
    with torch.no_grad():
        ours = pl()
        ref = tiny.model.encode_text(tiny.tokenizer([text.format(n) for n in names]))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_class_token_position_validated(tiny):
    with pytest.raises(ValueError, match="class_token_position"):
        PromptLearner(text_encoder_for(tiny.model), tiny.tokenizer, ["a"], n_ctx=2,
                      class_token_position="start")


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


# -- split q/k/v attention and LoRA on it ----------------------------------------------


def _vit(layers=2):
    """A small open_clip CLIP: ViT image tower and causal text tower, 2 blocks each."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    return open_clip.CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(layers=layers, width=32, head_width=16, patch_size=8,
                                 image_size=32),
        text_cfg=CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2,
                             layers=layers),
    ).eval()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "float", "bool", "3d", "padding"])
def test_split_attention_equals_multihead_attention(batch_first, mask):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    split = SplitAttention(copy.deepcopy(mha))
    x = torch.randn(3, 5, 16) if batch_first else torch.randn(5, 3, 16)
    kw = {}
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    if mask == "float":
        kw["attn_mask"] = torch.zeros(5, 5).masked_fill(causal, float("-inf"))
    elif mask == "bool":
        kw["attn_mask"] = causal
    elif mask == "3d":
        kw["attn_mask"] = torch.randn(3 * 4, 5, 5)
    elif mask == "padding":
        kw["key_padding_mask"] = torch.tensor([[False] * 5, [False] * 3 + [True] * 2,
                                               [False] * 4 + [True]])
    with torch.no_grad():
        want, want_w = mha(x, x, x, need_weights=True, **kw)
        got, got_w = split(x, x, x, need_weights=True, **kw)
        got_fast, none = split(x, x, x, need_weights=False, **kw)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_w, want_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_fast, want, rtol=1e-5, atol=1e-6)
    assert none is None


def test_split_attention_copies_weights_exactly():
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    split = SplitAttention(mha)
    w = torch.cat([split.q_proj.weight, split.k_proj.weight, split.v_proj.weight])
    b = torch.cat([split.q_proj.bias, split.k_proj.bias, split.v_proj.bias])
    assert torch.equal(w, mha.in_proj_weight) and torch.equal(b, mha.in_proj_bias)
    assert split.out_proj is mha.out_proj
    with pytest.raises(ValueError, match="bias_k"):
        SplitAttention(nn.MultiheadAttention(16, 4, add_bias_kv=True))


def test_split_attention_keeps_open_clip_features():
    """ViT image tower and causal-mask text tower: same features as open_clip's forward."""
    model = _vit()
    x = torch.randn(2, 3, 32, 32)
    tokens = torch.randint(1, 49000, (3, 16))
    with torch.no_grad():
        img0, txt0 = model.encode_image(x), model.encode_text(tokens)
    assert model.attn_mask is not None  # the text tower runs with a causal attn_mask
    names = split_attention(model, "both")
    assert len(names) == 4
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), img0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.encode_text(tokens), txt0, rtol=1e-5, atol=1e-6)
        model.attn_mask = None  # and without a mask
        txt1 = model.encode_text(tokens)
    ref = _vit()
    ref.attn_mask = None
    with torch.no_grad():
        torch.testing.assert_close(txt1, ref.encode_text(tokens), rtol=1e-5, atol=1e-6)


def test_split_attention_only_in_the_chosen_tower():
    model = _vit(1)
    assert split_attention(model, "text") == ["transformer.resblocks.0.attn"]
    assert isinstance(model.visual.transformer.resblocks[0].attn, nn.MultiheadAttention)


def test_default_lora_is_independent_qkv_in_every_block():
    """Three independent (A, B) pairs per attention block, rank r, out_proj untouched."""
    peft_model = attach_lora(_vit(), r=4, alpha=4, dropout=0.25)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    blocks = [f"{t}transformer.resblocks.{i}.attn" for t in ("", "visual.") for i in (0, 1)]
    for block in blocks:
        for proj in ("q_proj", "k_proj", "v_proj"):
            a = trainable[f"base_model.model.{block}.{proj}.lora_A.default.weight"]
            b = trainable[f"base_model.model.{block}.{proj}.lora_B.default.weight"]
            assert a.shape == (4, 32) and b.shape == (32, 4)
    assert len(trainable) == len(blocks) * 3 * 2
    assert not any("out_proj" in n for n in trainable)
    # independent: different A draws, and a gradient on q reaches only q's pair
    a_q = trainable[f"base_model.model.{blocks[0]}.q_proj.lora_A.default.weight"]
    a_k = trainable[f"base_model.model.{blocks[0]}.k_proj.lora_A.default.weight"]
    assert not torch.equal(a_q, a_k)
    lora = peft_model.get_base_model().transformer.resblocks[0].attn.q_proj
    assert lora.scaling["default"] == pytest.approx(4 / 4**0.5)


def test_lora_out_and_mlp_groups():
    m = _vit(1)
    split_attention(m)
    names = resolve_lora_targets(m, "text", "attention+out+mlp")
    assert names == [f"transformer.resblocks.0.{s}" for s in (
        "attn.k_proj", "attn.out_proj", "attn.q_proj", "attn.v_proj", "mlp.c_fc", "mlp.c_proj")]
    with pytest.raises(ValueError, match="lora_targets"):
        resolve_lora_targets(m, "text", "attention+everything")


def _lora_forward(peft_model, x, tokens):
    base = peft_model.get_base_model()
    return torch.cat([base.encode_image(x), base.encode_text(tokens)])


def test_zero_init_lora_features_equal_the_base_model():
    x, tokens = torch.randn(2, 3, 32, 32), torch.randint(1, 49000, (3, 16))
    ref = _vit()
    with torch.no_grad():
        want = torch.cat([ref.encode_image(x), ref.encode_text(tokens)])
        got = _lora_forward(attach_lora(_vit()).eval(), x, tokens)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_lora_dropout_acts_in_training_and_not_at_inference():
    x, tokens = torch.randn(2, 3, 32, 32), torch.randint(1, 49000, (3, 16))
    peft_model = attach_lora(_vit(), dropout=0.5)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    peft_model.eval()
    with torch.no_grad():
        e1, e2 = _lora_forward(peft_model, x, tokens), _lora_forward(peft_model, x, tokens)
    assert torch.equal(e1, e2)
    for n, m in peft_model.named_modules():
        if "lora_dropout" in n:
            m.train()
    with torch.no_grad():
        t1, t2 = _lora_forward(peft_model, x, tokens), _lora_forward(peft_model, x, tokens)
    assert not torch.allclose(t1, t2)
    assert not torch.allclose(t1, e1)
