"""CoOp prompt tuning: learnable context vectors in front of each class name.

The prompt of class ``c`` is ``"X X ... X {classname}."``; the embeddings of the ``n_ctx``
placeholder tokens are replaced by learned vectors and the sequence goes through the
frozen text tower. The text tower is reached through a small *text encoder* interface,
so the same learner works on open_clip's native text transformer and (see
``_hf_text.py``) on a Hugging Face text tower:

``width``
    width of the token embeddings;
``ctx_start``
    first position that learned context replaces (1: right after the start token);
``token_embeddings(tokens)``
    input embeddings ``(n, L, width)`` of token ids;
``encode(embeddings, tokens)``
    text features ``(n, embed_dim)`` (not normalised); equals ``model.encode_text(tokens)``
    when ``embeddings == token_embeddings(tokens)``;
``needed_length(tokens)`` (optional)
    how many leading positions determine the features (the rest is padding that cannot
    change them), or None when every position can; ``encode`` accepts sequences cut to it.

Cutting the padding matters for speed: a CoOp prompt uses about 20 of CLIP's 77 text
positions, and every training step runs the text tower forward and backward over all
class prompts.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_adapter

__all__ = ["CLASS_TOKEN_POSITIONS", "PromptLearner", "text_encoder_for"]

#: Accepted ``class_token_position`` values (as in CoOp).
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


class _OpenCLIPTextEncoder:
    """Text-encoder interface over open_clip's native ``CLIP`` text tower."""

    ctx_start = 1

    def __init__(self, model: nn.Module):
        self.model = model
        self.width = model.token_embedding.weight.shape[1]

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.token_embedding(tokens)

    def needed_length(self, tokens: torch.Tensor) -> int | None:
        # With the causal mask, a position only sees those before it, so positions after
        # the last non-padding token (id 0) change nothing that "argmax" (the end token),
        # "eos" or "first" pooling reads. Without the mask (or with "last" pooling) they do.
        m = self.model
        if getattr(m, "attn_mask", None) is None:
            return None
        if getattr(m, "text_pool_type", "argmax") not in ("argmax", "eos", "first"):
            return None
        nonpad = (tokens != 0).any(dim=0).nonzero()
        return int(nonpad.max()) + 1 if len(nonpad) else None

    def encode(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        # The steps of open_clip.CLIP.encode_text after the token-embedding lookup; the
        # sequence may be cut to ``needed_length`` positions.
        from open_clip.transformer import text_global_pool

        m = self.model
        n = x.shape[1]
        cast_dtype = m.transformer.get_cast_dtype()
        x = x.to(cast_dtype) + m.positional_embedding[:n].to(cast_dtype)
        mask = m.attn_mask
        x = m.transformer(x, attn_mask=None if mask is None else mask[:n, :n])
        x = m.ln_final(x)
        eos = getattr(m, "text_eos_id", None)
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=eos)
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x


def text_encoder_for(model: nn.Module):
    """The text-encoder interface for a backbone's text tower.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip ``CLIP`` (native text transformer) or ``CustomTextCLIP`` with a
        Hugging Face text tower.

    Returns
    -------
    encoder : object
        With ``width``, ``ctx_start``, ``token_embeddings`` and ``encode``.
    """
    if hasattr(model, "token_embedding") and hasattr(model, "transformer"):
        return _OpenCLIPTextEncoder(model)
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text, "config"):
        from ._hf_text import HFTextPromptEncoder

        return HFTextPromptEncoder(model)
    raise TypeError(
        f"prompt tuning does not know the text tower of {type(model).__name__}; "
        "use adapter='lora' instead"
    )


def _n_tokens(tokenizer, text: str) -> int:
    """Number of tokens ``text`` takes, without the start/end/pad tokens."""
    nonpad = (tokenizer([text]) != 0).sum()
    empty = (tokenizer([""]) != 0).sum()
    return int(nonpad - empty)


class PromptLearner(nn.Module):
    """Learnable CoOp context vectors and the class text features they produce.

    Parameters
    ----------
    encoder : object
        A text-encoder interface, from :func:`text_encoder_for`.
    tokenizer : callable
        The backbone's tokenizer (list of str -> LongTensor).
    classnames : list of str
        Text of each class.
    n_ctx : int, default=16
        Number of context vectors. Ignored when ``ctx_init`` is given: then it is the
        number of tokens of ``ctx_init``.
    ctx_init : str or None, default=None
        Words to initialise the context from (e.g. ``"a photo of a"``); None draws the
        vectors from N(0, 0.02).
    class_specific : bool, default=True
        One set of context vectors per class (the authors' default), each drawn on its
        own, or one shared set (CoOp's unified context).
    class_token_position : {"end", "middle", "front"}, default="end"
        Where the class name sits among the context vectors, as in CoOp: after them
        (``"X X X X {name}."``), between their two halves (``"X X {name} X X."``) or
        before them (``"{name} X X X X."``).
    generator : torch.Generator, optional
        Source of the random initialisation.

    Attributes
    ----------
    ctx : torch.nn.Parameter of shape (n_classes, n_ctx, width) or (n_ctx, width)
        The only trainable tensor.
    tokens : torch.LongTensor of shape (n_classes, L)
        Token ids of the placeholder prompts (buffer), cut after the last non-padding
        position where the text tower allows it (see ``needed_length``).
    """

    def __init__(
        self,
        encoder,
        tokenizer,
        classnames,
        *,
        n_ctx: int = 16,
        ctx_init: str | None = None,
        class_specific: bool = True,
        class_token_position: str = "end",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"class_token_position must be one of {CLASS_TOKEN_POSITIONS}, "
                f"got {class_token_position!r}"
            )
        self.encoder = encoder
        self.class_token_position = class_token_position
        start = encoder.ctx_start
        n_classes = len(classnames)
        if ctx_init:
            ctx_init = " ".join(ctx_init.replace("_", " ").split())
            n_ctx = _n_tokens(tokenizer, ctx_init)
            if n_ctx < 1:
                raise ValueError(f"ctx_init={ctx_init!r} has no tokens")
            with torch.no_grad():
                init = encoder.token_embeddings(tokenizer([ctx_init]))[0, start : start + n_ctx]
            prefix = ctx_init
        else:
            shape = (n_classes, n_ctx) if class_specific else (n_ctx,)
            init = torch.randn(*shape, encoder.width, generator=generator) * 0.02
            prefix = " ".join(["X"] * n_ctx)
        prompts = [f"{prefix} {name}." for name in classnames]
        tokens = tokenizer(prompts)
        if int((tokens != 0).sum(dim=1).max()) >= tokens.shape[1]:
            raise ValueError(
                f"a prompt with n_ctx={n_ctx} context tokens and the longest class name does "
                f"not fit the text tower's context length ({tokens.shape[1]} tokens); "
                "lower n_ctx or shorten the class names"
            )
        keep = getattr(encoder, "needed_length", lambda t: None)(tokens)
        if keep is not None and keep < tokens.shape[1]:
            tokens = tokens[:, :keep]  # padding that cannot change the features
        init = init.detach().clone().float()
        if class_specific and init.ndim == 2:  # ctx_init words: the same start per class
            init = init[None].repeat(n_classes, 1, 1)
        self.ctx = nn.Parameter(init)
        self.n_ctx = n_ctx
        # Tokens of each class name inside its prompt (CoOp's ``name_lens``): moved in
        # front of or between the context vectors for the other positions. The sequence
        # keeps its length, so the end token and padding stay where they are.
        self.name_lens = [_n_tokens(tokenizer, name) for name in classnames]
        self.register_buffer("tokens", tokens, persistent=False)
        with torch.no_grad():
            emb = encoder.token_embeddings(tokens)
        self.register_buffer("prefix", emb[:, :start].clone(), persistent=False)
        self.register_buffer("suffix", emb[:, start + n_ctx :].clone(), persistent=False)

    def forward(self) -> torch.Tensor:
        """Class text features from the current context vectors.

        Returns
        -------
        features : torch.Tensor of shape (n_classes, embed_dim)
            Not normalised.
        """
        ctx = self.ctx
        if ctx.ndim == 2:
            ctx = ctx[None].expand(self.prefix.shape[0], -1, -1)
        ctx = ctx.to(self.prefix.dtype)
        if self.class_token_position == "end":
            x = torch.cat([self.prefix, ctx, self.suffix], dim=1)
        else:
            half = self.n_ctx // 2 if self.class_token_position == "middle" else 0
            rows = []
            for i, k in enumerate(self.name_lens):
                name, rest = self.suffix[i : i + 1, :k], self.suffix[i : i + 1, k:]
                c = ctx[i : i + 1]
                rows.append(torch.cat([self.prefix[i : i + 1], c[:, :half], name,
                                       c[:, half:], rest], dim=1))
            x = torch.cat(rows)
        return self.encoder.encode(x, self.tokens)

    def class_features(self) -> torch.Tensor:
        """The adapter hook (:class:`~skpeal.adapters.AdapterPart`): :meth:`forward`."""
        return self()


def _build(context, **kwargs):
    """The prompt part: CoOp context vectors for the (possibly LoRA-adapted) text tower."""
    return PromptLearner(text_encoder_for(context.model), context.backbone.tokenizer,
                         context.classnames, generator=context.generator, **kwargs)


register_adapter(
    "prompt", build=_build, trains=("text",),
    params={"n_ctx": "n_ctx", "ctx_init": "ctx_init", "class_specific": "class_specific",
            "class_token_position": "class_token_position"})
