"""LoRA adapters on open_clip towers, through peft.

open_clip's transformer blocks use :class:`torch.nn.MultiheadAttention`, whose q, k and v
projections are one fused ``in_proj_weight``. peft can only adapt that layer as a whole
(one low-rank update of the fused projection, merged into the weights around every
forward, so its dropout is never applied). Before LoRA is attached, every
``nn.MultiheadAttention`` of the adapted towers is therefore replaced by
:class:`SplitAttention`: the same attention with separate ``q_proj``, ``k_proj``,
``v_proj`` and ``out_proj`` :class:`~torch.nn.Linear` layers initialised exactly from the
fused weights, computed with :func:`torch.nn.functional.scaled_dot_product_attention`.
The features are unchanged (to float rounding), and peft's ordinary ``Linear`` LoRA gives
independent q, k and v adapters whose dropout works, as in the authors' code and
CLIP-LoRA.

Targets are resolved to explicit module names of the chosen towers, then handed to
:class:`peft.LoraConfig`; peft does everything else (injection, freezing, merging,
state dicts). Scaling is ``alpha / sqrt(r)`` (peft's rank-stabilised LoRA), as in the
authors' code.
"""

from __future__ import annotations

import contextlib
import re
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_int, check_real
from . import prompt as _prompt  # noqa: F401 - registered first: adapter='s default
from ._registry import LORA_TOWERS as _LORA_TOWERS
from ._registry import register_adapter

__all__ = [
    "LORA_GROUPS",
    "LORA_TARGETS",
    "LORA_TOWERS",
    "SplitAttention",
    "attach_lora",
    "resolve_lora_targets",
    "split_attention",
]

#: Accepted ``lora_towers`` values.
LORA_TOWERS = _LORA_TOWERS  # the one list, beside the adapter kinds
#: Named target groups; ``lora_targets`` accepts one, or several joined by ``"+"``
#: (``"attention+mlp"``).
LORA_GROUPS = ("attention", "out", "mlp")
#: Common named targets (any ``"+"`` combination of :data:`LORA_GROUPS` is accepted).
LORA_TARGETS = ("attention", "mlp", "attention+mlp", "attention+out", "attention+out+mlp")

_ATTN_LINEAR = {"query", "key", "value", "q_proj", "k_proj", "v_proj", "qkv", "in_proj"}
_OUT_PAIRS = {("attn", "out_proj"), ("output", "dense")}


class SplitAttention(nn.Module):
    """:class:`torch.nn.MultiheadAttention` with separate q, k, v and output layers.

    A drop-in replacement (same call signature and outputs) built from an existing
    ``nn.MultiheadAttention``: ``q_proj``, ``k_proj`` and ``v_proj`` are new
    :class:`~torch.nn.Linear` layers holding exact copies of the rows of
    ``in_proj_weight``/``in_proj_bias`` (or of ``q/k/v_proj_weight``), ``out_proj`` is the
    original output layer. Attention is computed with
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Parameters
    ----------
    mha : torch.nn.MultiheadAttention
        Without ``bias_k``/``bias_v`` and ``add_zero_attn`` (open_clip uses neither).
    """

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("SplitAttention does not support bias_k/bias_v or add_zero_attn")
        e = mha.embed_dim
        self.embed_dim, self.num_heads = e, mha.num_heads
        self.head_dim = e // mha.num_heads
        self.batch_first = mha.batch_first
        self.dropout = mha.dropout
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.chunk(3)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        bias = mha.in_proj_bias
        biases = bias.chunk(3) if bias is not None else (None,) * 3
        layers = []
        for w, b in zip(weights, biases):
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None,
                            device=w.device, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            lin.requires_grad_(w.requires_grad)
            layers.append(lin)
        self.q_proj, self.k_proj, self.v_proj = layers
        self.out_proj = mha.out_proj
        self.train(mha.training)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        """Attention as :meth:`torch.nn.MultiheadAttention.forward` computes it.

        Parameters
        ----------
        query, key, value : torch.Tensor
            ``(L, E)`` unbatched, else ``(N, L, E)`` with ``batch_first`` or ``(L, N, E)``.
        key_padding_mask : torch.Tensor of shape (N, S) or None, default=None
            True (bool) or ``-inf`` (float) where a key is padding.
        need_weights : bool, default=True
            Also return the attention weights (computed without the fused kernel).
        attn_mask : torch.Tensor of shape (L, S) or (N * num_heads, L, S) or None
            True (bool) where attention is not allowed, or an additive float mask.
        average_attn_weights : bool, default=True
            Average the returned weights over heads.
        is_causal : bool, default=False
            Apply a causal mask when ``attn_mask`` is None.

        Returns
        -------
        output : torch.Tensor
            Same shape as ``query``.
        weights : torch.Tensor or None
            Attention weights when ``need_weights`` (averaged over heads unless
            ``average_attn_weights=False``), else None.
        """
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query[:, None], key[:, None], value[:, None]
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask[None]
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        # (L, N, E) from here on, as nn.MultiheadAttention's own computation
        L, N, _ = query.shape
        S = key.shape[0]
        h, d = self.num_heads, self.head_dim

        def heads(x, n):
            return x.reshape(n, N, h, d).permute(1, 2, 0, 3)  # (N, h, n, d)

        q = heads(self.q_proj(query), L)
        k = heads(self.k_proj(key), S)
        v = heads(self.v_proj(value), S)
        mask = _additive_mask(attn_mask, q.dtype, N, h, L, S)
        if key_padding_mask is not None:
            pad = _additive_mask(key_padding_mask, q.dtype, N, 1, 1, S, padding=True)
            mask = pad if mask is None else mask + pad
        causal = bool(is_causal) and mask is None
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / d**0.5
            if causal:
                scores = scores.masked_fill(
                    torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
            if mask is not None:
                scores = scores + mask
            attn = scores.softmax(dim=-1)
            weights = attn.mean(dim=1) if average_attn_weights else attn
            out = F.dropout(attn, p) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                 is_causal=causal)
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(L, N, h * d))
        if unbatched:
            out = out[:, 0]
            weights = None if weights is None else weights[0]
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


def _additive_mask(mask, dtype, n, h, L, S, padding=False):
    """A float mask broadcastable to ``(n, h, L, S)`` from a MultiheadAttention mask."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:  # True = not allowed to attend
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf"))
    else:
        mask = mask.to(dtype)
    if padding:
        return mask.reshape(n, 1, 1, S)
    if mask.dim() == 3:
        return mask.reshape(n, h, L, S)
    return mask


def split_attention(model: nn.Module, towers: str = "both") -> list[str]:
    """Replace each ``nn.MultiheadAttention`` of the chosen towers by :class:`SplitAttention`.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip model, modified in place.
    towers : {"both", "vision", "text"}, default="both"

    Returns
    -------
    names : list of str
        Names of the replaced modules (their ``q_proj``/``k_proj``/``v_proj`` children
        are the attention targets of LoRA).
    """
    check_choice("lora_towers", towers, LORA_TOWERS)
    wanted = {"vision", "text"} if towers == "both" else {towers}
    found = [(n, m) for n, m in model.named_modules()
             if n and isinstance(m, nn.MultiheadAttention) and _tower_of(n) in wanted
             and m.bias_k is None and not m.add_zero_attn]
    for name, mha in found:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, SplitAttention(mha))
    return [n for n, _ in found]
_MLP_PAIRS = {("mlp", "c_fc"), ("mlp", "c_proj"), ("mlp", "fc1"), ("mlp", "fc2"),
              ("intermediate", "dense"), ("output", "dense")}


def _tower_of(name: str) -> str:
    return "vision" if name == "visual" or name.startswith("visual.") else "text"


def _is_attention(name: str, module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return True
    return isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in _ATTN_LINEAR


def _is_out(name: str, module: nn.Module) -> bool:
    parts = name.split(".")
    if not isinstance(module, nn.Linear) or len(parts) < 2:
        return False
    if (parts[-2], parts[-1]) == ("output", "dense"):  # BERT: attention.output.dense only
        return len(parts) >= 3 and parts[-3] == "attention"
    return (parts[-2], parts[-1]) in _OUT_PAIRS


def _is_mlp(name: str, module: nn.Module) -> bool:
    if not isinstance(module, nn.Linear):
        return False
    parts = name.split(".")
    if len(parts) < 2 or (parts[-2], parts[-1]) not in _MLP_PAIRS:
        return False
    # BERT's attention block also has an ``output.dense``; that one is not the MLP.
    return not (len(parts) >= 3 and parts[-3] == "attention")


def resolve_lora_targets(
    model: nn.Module, towers: str = "both", targets="attention", defaults=None
) -> list[str]:
    """Full names of the modules of ``model`` that LoRA will adapt.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip model; the image tower is ``model.visual``, everything else is the
        text side.
    towers : {"both", "vision", "text"}, default="both"
    targets : str or list of str, default="attention"
        Named groups, alone or joined by ``"+"`` (``"attention+mlp"``):
        ``"attention"``: the q, k and v ``Linear`` layers of every attention block
        (``q_proj``/``k_proj``/``v_proj`` of :class:`SplitAttention`, Hugging Face
        ``query``/``key``/``value``); ``"out"``: the attention output layers
        (``attn.out_proj``, BERT's ``attention.output.dense``); ``"mlp"``: the MLP
        ``Linear`` layers (``c_fc``/``c_proj``, ``fc1``/``fc2``, BERT's
        ``intermediate.dense``/``output.dense``). A list holds regular expressions, each
        matched (``re.fullmatch``) against full module names. A tower that still has
        ``nn.MultiheadAttention`` layers (see :func:`split_attention`) gets them adapted
        as a whole by the ``"attention"`` group.
    defaults : dict or None, default=None
        Patterns per tower (``{"vision": [...]}``), from the backbone
        (:attr:`skpeal.backbones.Backbone.lora_targets`), used for a tower in which a
        named group matches nothing (a convolutional image tower has no attention layer).

    Returns
    -------
    names : list of str
        Sorted module names; never empty.

    Raises
    ------
    ValueError
        Unknown ``towers``/``targets``, or nothing matched in a requested tower.
    """
    check_choice("lora_towers", towers, LORA_TOWERS)
    wanted = {"vision", "text"} if towers == "both" else {towers}
    if isinstance(targets, str):
        groups = set(targets.split("+"))
        if not targets or not groups <= set(LORA_GROUPS):
            raise ValueError(
                f"lora_targets must be one of {LORA_TARGETS} (groups {LORA_GROUPS} joined "
                f"by '+') or a list of module-name patterns, got {targets!r}"
            )

        def match(name, module):
            return (("attention" in groups and _is_attention(name, module))
                    or ("out" in groups and _is_out(name, module))
                    or ("mlp" in groups and _is_mlp(name, module)))
    else:
        try:
            patterns = [re.compile(p) for p in targets]
        except (TypeError, re.error) as exc:
            raise ValueError(f"lora_targets patterns are invalid: {exc}") from None
        if not patterns:
            raise ValueError("lora_targets is an empty list")

        def match(name, module):
            return any(p.fullmatch(name) for p in patterns)

    names = []
    found = dict.fromkeys(wanted, False)
    for name, module in model.named_modules():
        if not name or _tower_of(name) not in wanted:
            continue
        if match(name, module):
            # a match inside an already matched MultiheadAttention (its out_proj) is covered
            if any(name.startswith(n + ".") for n in names):
                continue
            names.append(name)
            found[_tower_of(name)] = True
    missing = [t for t, ok in found.items() if not ok]
    if isinstance(targets, str) and defaults:
        for tower in [t for t in missing if defaults.get(t)]:
            patterns = [re.compile(p) for p in defaults[tower]]
            hits = [n for n, _ in model.named_modules()
                    if n and _tower_of(n) == tower and any(p.fullmatch(n) for p in patterns)]
            if hits:
                names.extend(hits)
                missing.remove(tower)
    if missing:
        raise ValueError(
            f"lora_targets={targets!r} matches no module in the {' and '.join(missing)} "
            f"tower of {type(model).__name__}; pass lora_targets as a list of module-name "
            "patterns, or choose lora_towers"
        )
    return sorted(names)


def attach_lora(
    model: nn.Module,
    *,
    r: int = 4,
    alpha: float = 4.0,
    dropout: float = 0.25,
    towers: str = "both",
    targets="attention",
    defaults=None,
):
    """Wrap ``model`` with peft LoRA adapters; only the adapter weights stay trainable.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip model (modified in place by peft).
    r : int, default=4
        Rank.
    alpha : float, default=4.0
        Scaling numerator; the update is scaled by ``alpha / sqrt(r)``.
    dropout : float, default=0.25
        Dropout on the adapter input.
    towers : {"both", "vision", "text"}, default="both"
        Towers that get adapters; their ``nn.MultiheadAttention`` layers are first
        replaced by :class:`SplitAttention` (see :func:`split_attention`).
    targets : str or list of str, default="attention"
        Layers that get adapters; see :func:`resolve_lora_targets`. The default adapts
        q, k and v of every attention block with independent rank-``r`` adapters.
    defaults : dict or None, default=None
        Per-tower patterns for towers without such layers; see
        :func:`resolve_lora_targets`.

    Returns
    -------
    peft_model : peft.PeftModel
        ``peft_model.get_base_model()`` is ``model`` with LoRA layers inside.
    """
    from peft import LoraConfig, get_peft_model

    r = check_int("lora_r", r, 1)
    dropout = check_real("lora_dropout", dropout, 0.0, 1.0, closed="left")
    check_choice("lora_towers", towers, LORA_TOWERS)
    split_attention(model, towers)
    names = resolve_lora_targets(model, towers, targets, defaults)
    config = LoraConfig(
        r=r,
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        # peft matches a list of names by suffix ("transformer.resblocks.0.attn" would also
        # match "visual.transformer.resblocks.0.attn"); an anchored pattern matches exactly.
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
        use_rslora=True,
        bias="none",
    )
    return get_peft_model(model, config)


def _trained_towers(kwargs):
    towers = check_choice("lora_towers", kwargs["towers"], LORA_TOWERS)
    return ("vision", "text") if towers == "both" else (towers,)


def _build(context, **kwargs):
    """The LoRA part: a peft model around ``context.backbone.model`` (LoRA layers put in
    place; registered on the adapted module as ``peft``, where its tensors are saved)."""
    return attach_lora(context.backbone.model, defaults=context.backbone.lora_targets,
                       **kwargs)


class _Merged:
    """LoRA weights merged into private copies of the base weights, restored on exit.

    A merged layer runs one matrix product instead of the base product plus the
    low-rank one (and peft's ``nn.MultiheadAttention`` wrapper no longer merges and
    unmerges inside every forward). The base tensors may be shared with other models
    (``load_backbone(shared=True)``), so they are never written to; on exit the original
    tensors are put back (bit for bit; an unmerge alone leaves float rounding behind).
    Skipped when a base weight is not float32/float64 (merging into low precision would
    round the adapter away).
    """

    def __init__(self, peft_model):
        self.peft_model = peft_model
        self.saved = None

    def __enter__(self):
        base = {n: p for n, p in self.peft_model.named_parameters() if ".base_layer." in n}
        if not base or any(p.dtype not in (torch.float32, torch.float64) for p in base.values()):
            return self
        with torch.no_grad(), _quiet_peft():
            self.saved = {n: p.data for n, p in base.items()}
            for p in base.values():
                p.data = p.data.clone()
            self.peft_model.merge_adapter()
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            with torch.no_grad(), _quiet_peft():
                self.peft_model.unmerge_adapter()
                for n, p in self.peft_model.named_parameters():
                    if n in self.saved:
                        p.data = self.saved[n]
            self.saved = None
        return False


@contextlib.contextmanager
def _quiet_peft():
    """Silence peft's notes that a MultiheadAttention's out_proj was (un)merged with it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="All adapters are already merged")
        warnings.filterwarnings("ignore", message="Already unmerged")
        yield


register_adapter(
    "lora", build=_build, trains=_trained_towers, wraps_backbone=True, attribute="peft",
    params={"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout",
            "towers": "lora_towers", "targets": "lora_targets"},
    merge=lambda peft_model: _Merged(peft_model))
