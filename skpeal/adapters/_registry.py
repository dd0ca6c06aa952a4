"""Adapter kinds: one record per value of the estimator's ``adapter`` parameter.

The model is peft's ``register_peft_method``: an adapter is a *part* (its builder, the
parameters it reads, the towers it trains, how it merges for inference) registered in one
call from its own module of :mod:`skpeal.adapters`, and a *kind* (the value ``adapter=``
accepts) is a sequence of parts (``"prompt+lora"``). The kind is parsed here once, and
which tower a kind trains (and so which it leaves frozen) is decided here once, by
:func:`frozen_towers`. Everything else (the estimator's parameter check, the adapted
module, the labelling loop, ``skpeal run``'s choices) reads these records.

No torch, open_clip or peft import here: the builders come with the registrations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from .._validation import InvalidParameterError, check_choice

__all__ = ["AdapterContext", "AdapterKind", "AdapterPart", "LORA_TOWERS", "adapter_kind",
           "adapter_names", "adapter_part", "check_adapter_params", "frozen_towers",
           "register_adapter"]

#: Values of ``lora_towers`` (and the towers an adapter can train, "both" aside).
LORA_TOWERS = ("both", "vision", "text")
_TOWERS = ("vision", "text")


@dataclasses.dataclass(frozen=True)
class AdapterContext:
    """What a part's builder gets (besides its keyword arguments).

    Parameters
    ----------
    backbone : skpeal.backbones.Backbone
        The backbone (``backbone.model`` is the open_clip-like model, modified in place
        by parts with ``wraps_backbone=True``).
    model : torch.nn.Module
        The model as the parts built so far left it.
    classnames : list of str
        Text of each class, in ``classes_`` order.
    templates : list of str
        The prompt templates (each with one ``{}``).
    generator : torch.Generator
        The source of random initialisation (seeded by ``random_state``).
    """

    backbone: object
    model: object
    classnames: list
    templates: list
    generator: object


@dataclasses.dataclass(frozen=True)
class AdapterPart:
    """One adapter part: how it is built, what it reads, what it trains.

    Made by :func:`register_adapter`.

    Parameters
    ----------
    name : str
        The part's name (also a kind of the same name).
    build : callable
        ``build(context, **kwargs) -> torch.nn.Module``: the part's module, whose
        parameters with ``requires_grad`` are the trained (and saved) tensors. The module
        may define ``class_features()`` (class text features, used once trained, instead
        of the templates'), ``adapt_image_features(features)`` (applied to the normalised
        image features before the class scores; the identity when untrained).
    params : dict, default={}
        ``{build keyword: estimator parameter}`` for parts whose parameters are flat
        estimator parameters (the built-in prompt and LoRA).
    options : dict, default={}
        ``{build keyword: default}`` for parameters given through the estimator's
        ``adapter_params`` dict (a new part needs no new estimator parameter).
    check : callable or None, default=None
        ``check(options) -> options``: validates and normalises the options (the
        defaults filled in); raises ``ValueError`` naming the bad option.
    trains : tuple of str or callable, default=()
        The towers (``"vision"``, ``"text"``) whose output the part changes, or
        ``trains(kwargs)`` computing them from the build keywords. A part that trains
        neither (a head on the features) leaves both towers frozen.
    wraps_backbone : bool, default=False
        The part modifies the backbone in place (LoRA): it is built before the model is
        registered on the module (and before parts that read the model).
    attribute : str, default=""
        Name of the part's module on :class:`~skpeal.nn.AdaptedCLIP` (its tensors are
        saved under it).
    merge : callable or None, default=None
        ``merge(module)``: a context manager in which inference runs (LoRA merges its
        weights into the base layers); None: inference runs as training does.
    """

    name: str
    build: Callable
    params: Mapping = dataclasses.field(default_factory=dict)
    options: Mapping = dataclasses.field(default_factory=dict)
    check: Callable | None = None
    trains: tuple | Callable = ()
    wraps_backbone: bool = False
    attribute: str = ""
    merge: Callable | None = None

    def kwargs(self, params) -> dict:
        """Build keywords from estimator-named parameters.

        Parameters
        ----------
        params : mapping or object
            Estimator parameters by name (a dict, or an object such as an
            ``AdapterSpec`` with them as attributes). Options come from its
            ``adapter_params`` (defaults where absent).

        Returns
        -------
        kwargs : dict
            The keywords of :attr:`build`.
        """
        get = params.get if isinstance(params, Mapping) else (lambda k: getattr(params, k, None))
        given = get("adapter_params") or {}
        return {**{kw: get(name) for kw, name in self.params.items()},
                **{kw: given.get(kw, default) for kw, default in self.options.items()}}

    def trained_towers(self, kwargs) -> frozenset:
        """The towers this part trains.

        Parameters
        ----------
        kwargs : dict
            Its build keywords (:meth:`kwargs`).

        Returns
        -------
        towers : frozenset of str
            Among ``"vision"`` and ``"text"``.
        """
        towers = self.trains(kwargs) if callable(self.trains) else self.trains
        return frozenset(towers)


@dataclasses.dataclass(frozen=True)
class AdapterKind:
    """One adapter kind: its name and parts.

    Parameters
    ----------
    name : str
        The value of ``adapter=`` (``"prompt"``, ``"lora"``, ``"prompt+lora"``).
    parts : tuple of str
        Names of registered parts, in the order they are attached.
    """

    name: str
    parts: tuple

    def has(self, part: str) -> bool:
        """Whether the kind includes a part.

        Parameters
        ----------
        part : str
            A part's name.

        Returns
        -------
        has : bool
            True when ``part`` is one of :attr:`parts`.
        """
        return part in self.parts

    def records(self) -> list[AdapterPart]:
        """The part records, in attachment order.

        Returns
        -------
        records : list of AdapterPart
            Backbone-wrapping parts first, then the others, each group in :attr:`parts`
            order.
        """
        recs = [_PARTS[p] for p in self.parts]
        return [r for r in recs if r.wraps_backbone] + [r for r in recs if not r.wraps_backbone]

    def part_kwargs(self, params) -> dict:
        """The build keywords of each part.

        Parameters
        ----------
        params : mapping or object
            Estimator parameters by name (see :meth:`AdapterPart.kwargs`).

        Returns
        -------
        kwargs : dict
            ``{part name: build keywords}``.
        """
        return {r.name: r.kwargs(params) for r in self.records()}

    def module_kwargs(self, params) -> dict:
        """The build keywords of every part, in one dict.

        Parameters
        ----------
        params : mapping or object
            Estimator parameters by name (see :meth:`AdapterPart.kwargs`).

        Returns
        -------
        kwargs : dict
            ``{build keyword: value}`` over all parts.
        """
        return {k: v for kw in self.part_kwargs(params).values() for k, v in kw.items()}

    def trained_towers(self, params) -> frozenset:
        """The towers whose output the adapter changes.

        Parameters
        ----------
        params : mapping or object
            Estimator parameters by name (see :meth:`AdapterPart.kwargs`).

        Returns
        -------
        towers : frozenset of str
            Among ``"vision"`` and ``"text"``.
        """
        out = frozenset()
        for r in self.records():
            out |= r.trained_towers(r.kwargs(params))
        return out

    def options(self) -> dict:
        """The options the kind takes through the estimator's ``adapter_params``.

        Returns
        -------
        options : dict
            ``{option: default}`` over its parts.
        """
        return {k: v for r in self.records() for k, v in r.options.items()}


_PARTS: dict[str, AdapterPart] = {}
_KINDS: dict[str, AdapterKind] = {}


def register_adapter(name, parts=None, *, build=None, params=None, options=None, check=None,
                     trains=(), wraps_backbone=False, attribute=None, merge=None,
                     replace=False):
    """Register an adapter: a new part (``build=``) or a kind made of registered parts.

    Parameters
    ----------
    name : str
        The value ``adapter=`` will accept.
    parts : sequence of str or None, default=None
        For a kind made of registered parts: their names, without repeats. None with
        ``build``: the new part alone.
    build : callable or None, default=None
        A new part's builder, ``build(context, **kwargs) -> torch.nn.Module`` (see
        :class:`AdapterPart`); the part is registered under ``name``.
    params : dict or None, default=None
        A new part's ``{build keyword: estimator parameter}`` (see :class:`AdapterPart`).
    options : dict or None, default=None
        A new part's ``{build keyword: default}``, set through ``adapter_params``.
    check : callable or None, default=None
        ``check(options) -> options``, validating the options.
    trains : tuple of str or callable, default=()
        The towers the part trains (see :class:`AdapterPart`).
    wraps_backbone : bool, default=False
        The part modifies the backbone in place (built first).
    attribute : str or None, default=None
        Its attribute on the adapted module; None: ``name`` with ``-``/``+`` as ``_``.
    merge : callable or None, default=None
        ``merge(module)``, the context manager inference runs in.
    replace : bool, default=False
        Allow replacing a kind (and part) of the same name.

    Returns
    -------
    kind : AdapterKind
        The record.

    Raises
    ------
    InvalidParameterError
        For a taken name, unknown or repeated parts, or malformed part fields.
    """
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"adapter name must be a non-empty string, got {name!r}")
    if name in _KINDS and not replace:
        raise InvalidParameterError(f"adapter {name!r} is already registered")
    if build is not None:
        if not callable(build):
            raise InvalidParameterError(f"adapter {name!r}: build must be callable")
        if not (callable(trains) or set(trains) <= set(_TOWERS)):
            raise InvalidParameterError(
                f"adapter {name!r}: trains must be towers from {_TOWERS} or a callable, "
                f"got {trains!r}")
        part = AdapterPart(name, build, dict(params or {}), dict(options or {}), check,
                           trains if callable(trains) else tuple(trains), bool(wraps_backbone),
                           attribute or name.replace("-", "_").replace("+", "_"), merge)
        clash = [k for k in part.options if k in part.params]
        if clash:
            raise InvalidParameterError(f"adapter {name!r}: {clash} are both params and options")
        _PARTS[name] = part
        parts = (name,) if parts is None else parts
    parts = tuple(parts or ())
    unknown = [p for p in parts if p not in _PARTS]
    if not parts or unknown or len(set(parts)) != len(parts):
        raise InvalidParameterError(
            f"adapter {name!r}: parts must be distinct names from {list(_PARTS)}, got {parts}")
    kind = AdapterKind(name, parts)
    _KINDS[name] = kind
    return kind


def unregister_adapter(name) -> None:
    """Remove a kind (and its part of the same name, unless another kind uses it).

    Parameters
    ----------
    name : str
        The kind.
    """
    _KINDS.pop(name, None)
    if name in _PARTS and not any(name in k.parts for k in _KINDS.values()):
        del _PARTS[name]


def portable_kind(name):
    """What a pickle needs to register a kind made outside skpeal in another process.

    Parameters
    ----------
    name : str
        A registered kind.

    Returns
    -------
    records : tuple or None
        ``(kind, parts)`` when a part of the kind was registered outside
        :mod:`skpeal.adapters` (a process that unpickles the model, such as a Ray actor,
        may not have run that registration), else None.
    """
    kind = adapter_kind(name)
    parts = [_PARTS[p] for p in kind.parts]
    if all(getattr(p.build, "__module__", "").startswith(__package__ + ".") for p in parts):
        return None
    return kind, parts


def restore_kind(records) -> None:
    """Register what :func:`portable_kind` gave, unless the kind is registered already.

    Parameters
    ----------
    records : tuple or None
        ``(kind, parts)``, or None (nothing to do).
    """
    if records is None or records[0].name in _KINDS:
        return
    kind, parts = records
    for part in parts:
        _PARTS.setdefault(part.name, part)
    _KINDS[kind.name] = kind


def adapter_names():
    """The registered kinds (``adapter=``'s choices).

    Returns
    -------
    names : tuple of str
        In registration order.
    """
    return tuple(_KINDS)


def adapter_part(name) -> AdapterPart:
    """The record of a registered part.

    Parameters
    ----------
    name : str
        The part's name.

    Returns
    -------
    part : AdapterPart
        Its record.
    """
    return _PARTS[name]


def adapter_kind(name) -> AdapterKind:
    """The record of ``adapter=name``: the one place the kind is parsed.

    Parameters
    ----------
    name : str
        The value of ``adapter=``.

    Returns
    -------
    kind : AdapterKind
        Its record.

    Raises
    ------
    InvalidParameterError
        Naming the parameter and the choices, for an unknown kind.
    """
    if not isinstance(name, str) or name not in _KINDS:
        check_choice("adapter", name, tuple(_KINDS))  # raises, naming the choices
    return _KINDS[name]


def check_adapter_params(adapter, value) -> dict:
    """Validate the estimator's ``adapter_params`` for ``adapter``: the options, filled.

    Parameters
    ----------
    adapter : str or AdapterKind
        The kind.
    value : dict or None
        The options given (None: none).

    Returns
    -------
    options : dict
        Every option of the kind's parts, defaults filled in, checked by the parts.

    Raises
    ------
    InvalidParameterError
        ``value`` is not a dict with string keys, or names an option the kind has not.
    """
    kind = adapter if isinstance(adapter, AdapterKind) else adapter_kind(adapter)
    value = {} if value is None else value
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidParameterError(
            f"adapter_params must be None or a dict of options, got {value!r:.80}")
    known = kind.options()
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"adapter_params has options {unknown} that adapter={kind.name!r} does not take; "
            f"its options: {sorted(known) or 'none'}")
    out = {}
    for r in kind.records():
        opts = {k: value.get(k, d) for k, d in r.options.items()}
        out.update(r.check(opts) if r.check is not None else opts)
    return out


def frozen_towers(adapter, lora_towers=None, *, params=None):
    """Which towers an adapter leaves frozen: the one rule, read by every caller.

    Parameters
    ----------
    adapter : str or AdapterKind
        The kind.
    lora_towers : {"both", "vision", "text"} or None, default=None
        The towers LoRA adapts (ignored without a LoRA part); None: ``params``'s
        ``lora_towers``, else ``"both"``.
    params : mapping, object or None, default=None
        Other estimator parameters by name (a dict, or an object with them as attributes
        such as the fit spec's adapter), for parts whose towers depend on them.

    Returns
    -------
    vision_frozen, text_frozen : bool
        True when the tower's output does not depend on the adapter (a frozen image tower
        lets image features be cached and reused across fits and rounds).
    """
    kind = adapter if isinstance(adapter, AdapterKind) else adapter_kind(adapter)
    if params is None:
        params = {}
    params = dict(params) if isinstance(params, Mapping) else dict(vars(params))
    if lora_towers is not None or params.get("lora_towers") is None:
        params["lora_towers"] = "both" if lora_towers is None else lora_towers
    trained = kind.trained_towers(params)
    return "vision" not in trained, "text" not in trained
