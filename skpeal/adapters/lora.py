"""LoRA adapters on open_clip towers, through peft.

Targets are resolved to explicit module names of the chosen towers, then handed to
:class:`peft.LoraConfig`; peft does everything else (injection, freezing, merging,
state dicts). Scaling is ``alpha / sqrt(r)`` (peft's rank-stabilised LoRA), as in the
authors' code.
"""

from __future__ import annotations

import re

from torch import nn

from .._validation import check_choice, check_int, check_real

__all__ = ["LORA_TARGETS", "LORA_TOWERS", "attach_lora", "resolve_lora_targets"]

#: Accepted ``lora_towers`` values.
LORA_TOWERS = ("both", "vision", "text")
#: Named target groups accepted by ``lora_targets``.
LORA_TARGETS = ("attention", "mlp", "attention+mlp")

_ATTN_LINEAR = {"query", "key", "value", "q_proj", "k_proj", "v_proj", "qkv", "in_proj"}
_MLP_PAIRS = {("mlp", "c_fc"), ("mlp", "c_proj"), ("mlp", "fc1"), ("mlp", "fc2"),
              ("intermediate", "dense"), ("output", "dense")}


def _tower_of(name: str) -> str:
    return "vision" if name == "visual" or name.startswith("visual.") else "text"


def _is_attention(name: str, module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return True
    return isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in _ATTN_LINEAR


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
    targets : {"attention", "mlp", "attention+mlp"} or list of str, default="attention"
        ``"attention"``: ``nn.MultiheadAttention`` modules (peft adapts their fused
        q/k/v input projection and output projection) or q/k/v ``Linear`` layers (Hugging
        Face towers); ``"mlp"``: the MLP ``Linear`` layers (``c_fc``/``c_proj``,
        ``fc1``/``fc2``, BERT's ``intermediate.dense``/``output.dense``). A list holds
        regular expressions, each matched (``re.fullmatch``) against full module names.
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
        if targets not in LORA_TARGETS:
            raise ValueError(
                f"lora_targets must be one of {LORA_TARGETS} or a list of module-name "
                f"patterns, got {targets!r}"
            )
        groups = set(targets.split("+"))

        def match(name, module):
            return ("attention" in groups and _is_attention(name, module)) or (
                "mlp" in groups and _is_mlp(name, module)
            )
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
        Towers that get adapters; see :func:`resolve_lora_targets`.
    targets : {"attention", "mlp", "attention+mlp"} or list of str, default="attention"
        Layers that get adapters; see :func:`resolve_lora_targets`.
    defaults : dict or None, default=None
        Per-tower patterns used where a named group matches nothing; see
        :func:`resolve_lora_targets`.

    Returns
    -------
    peft_model : peft.PeftModel
        ``peft_model.get_base_model()`` is ``model`` with LoRA layers inside.
    """
    from peft import LoraConfig, get_peft_model

    r = check_int("lora_r", r, 1)
    dropout = check_real("lora_dropout", dropout, 0.0, 1.0, closed="left")
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
