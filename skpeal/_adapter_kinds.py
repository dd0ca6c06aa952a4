"""Adapter kinds: one record per value of the estimator's ``adapter`` parameter.

A kind is a set of *parts* (``"prompt"``: CoOp context vectors in front of the class
tokens; ``"lora"``: low-rank updates of the towers chosen by ``lora_towers``), like peft's
``register_peft_method``: the kind is parsed here once, and which tower a kind trains
(and so which it leaves frozen) is decided here once, by :func:`frozen_towers`.
Everything else (the estimator's parameter check, the fit spec, the adapted module, the
labelling loop, ``skpeal run``'s choices) reads these records.

Bottom floor: no torch, open_clip or peft import.
"""

from __future__ import annotations

import dataclasses

from ._validation import InvalidParameterError, check_choice

__all__ = ["AdapterKind", "PARTS", "adapter_kind", "adapter_names", "frozen_towers",
           "register_adapter"]

#: The parts an adapter kind is made of, and for each the estimator parameters that
#: shape it, as ``{constructor keyword: estimator parameter}``.
PARTS = {
    "prompt": {"n_ctx": "n_ctx", "ctx_init": "ctx_init", "class_specific": "class_specific",
               "class_token_position": "class_token_position"},
    "lora": {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout",
             "towers": "lora_towers", "targets": "lora_targets"},
}
#: Values of ``lora_towers``.
LORA_TOWERS = ("both", "vision", "text")


@dataclasses.dataclass(frozen=True)
class AdapterKind:
    """One adapter kind: its name and parts.

    Attributes
    ----------
    name : str
        The value of ``adapter=`` (``"prompt"``, ``"lora"``, ``"prompt+lora"``).
    parts : tuple of str
        Keys of :data:`PARTS`, in the order they are attached (LoRA before the prompt:
        peft freezes every parameter it finds in the model).
    """

    name: str
    parts: tuple

    def has(self, part: str) -> bool:
        """Whether the kind includes ``part``."""
        return part in self.parts

    def trained_towers(self, lora_towers: str) -> frozenset:
        """The towers (``"vision"``, ``"text"``) whose output the adapter changes.

        The prompt changes the text tower's input, hence its output; LoRA changes the
        towers named by ``lora_towers``.
        """
        trained = set()
        if self.has("prompt"):
            trained.add("text")
        if self.has("lora"):
            trained |= {"vision", "text"} if lora_towers == "both" else {lora_towers}
        return frozenset(trained)

    def module_kwargs(self, params) -> dict:
        """Constructor keywords of the parts from estimator-named ``params`` (a mapping
        or an object with those attributes)."""
        get = params.get if isinstance(params, dict) else (lambda k: getattr(params, k))
        return {kw: get(name) for part in self.parts for kw, name in PARTS[part].items()}


_KINDS: dict[str, AdapterKind] = {}


def register_adapter(name, parts, *, replace=False):
    """Register an adapter kind made of existing parts.

    Parameters
    ----------
    name : str
        The value ``adapter=`` will accept.
    parts : sequence of str
        Keys of :data:`PARTS`, without repeats, LoRA before the prompt.
    replace : bool, default=False
        Allow replacing a kind of the same name.

    Returns
    -------
    kind : AdapterKind
        The record.
    """
    parts = tuple(parts)
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"adapter name must be a non-empty string, got {name!r}")
    if name in _KINDS and not replace:
        raise InvalidParameterError(f"adapter {name!r} is already registered")
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown or len(set(parts)) != len(parts):
        raise InvalidParameterError(
            f"adapter {name!r}: parts must be distinct names from {list(PARTS)}, got {parts}")
    kind = AdapterKind(name, parts)
    _KINDS[name] = kind
    return kind


def adapter_names():
    """The registered kinds, in registration order (``adapter=``'s choices)."""
    return tuple(_KINDS)


def adapter_kind(name) -> AdapterKind:
    """The record of ``adapter=name``: the one place the kind is parsed.

    Raises
    ------
    InvalidParameterError
        Naming the parameter and the choices, for an unknown kind.
    """
    if not isinstance(name, str) or name not in _KINDS:
        check_choice("adapter", name, tuple(_KINDS))  # raises, naming the choices
    return _KINDS[name]


def frozen_towers(adapter, lora_towers="both"):
    """Which towers an adapter leaves frozen: the one rule, read by every caller.

    Parameters
    ----------
    adapter : str or AdapterKind
        The kind.
    lora_towers : {"both", "vision", "text"}, default="both"
        The towers LoRA adapts (ignored without a LoRA part).

    Returns
    -------
    vision_frozen, text_frozen : bool
        True when the tower's output does not depend on the adapter (a frozen image tower
        lets image features be cached and reused across fits and rounds).
    """
    kind = adapter if isinstance(adapter, AdapterKind) else adapter_kind(adapter)
    if kind.has("lora"):
        check_choice("lora_towers", lora_towers, LORA_TOWERS)
    trained = kind.trained_towers(lora_towers)
    return "vision" not in trained, "text" not in trained


register_adapter("prompt", ("prompt",))
register_adapter("lora", ("lora",))
register_adapter("prompt+lora", ("lora", "prompt"))
