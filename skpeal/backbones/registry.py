"""The backbone registry: names users pass as ``model``, and :func:`load_backbone`.

A backbone is described by two picklable values, ``model`` and ``pretrained``; the
estimator stores those and rebuilds the backbone from them, so a pickled estimator never
carries a copy of the backbone weights.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections.abc import Callable

import open_clip
from torch import nn

from . import offline
from .base import Backbone
from .openclip import load_open_clip

__all__ = [
    "DEFAULT_WEIGHTS",
    "clear_backbone_cache",
    "list_backbones",
    "load_backbone",
    "register_backbone",
    "resolve_pretrained",
]

#: The ``pretrained`` value that picks each backbone's own weights (the estimator's default).
DEFAULT_WEIGHTS = "default"


_FACTORIES: dict[str, Callable[[str | None], Backbone]] = {}


def register_backbone(name: str, factory: Callable[[str | None], Backbone]) -> None:
    """Register a backbone that is not an open_clip model name.

    Parameters
    ----------
    name : str
        The name users pass as ``model``. Registered names take precedence over
        open_clip's own model names.
    factory : callable
        ``factory(pretrained) -> Backbone``; ``pretrained`` is the user's value (a tag,
        a local file, or None). It must be deterministic: the estimator rebuilds the
        backbone from ``(name, pretrained)`` when it is unpickled.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backbone name must be a non-empty string, got {name!r}")
    _FACTORIES[name] = factory


def list_backbones() -> list[str]:
    """Names accepted as ``model``: registered backbones, then open_clip's models.

    Returns
    -------
    names : list of str
        Sorted registered names first.
    """
    return sorted(_FACTORIES) + [m for m in open_clip.list_models() if m not in _FACTORIES]


def resolve_pretrained(model, pretrained):
    """What ``pretrained="default"`` means for ``model``; other values are returned as given.

    ``"default"`` picks the backbone's own weights: for a registered backbone (e.g. the
    offline ``"effnet-lite0-minilm"``, whose weights ship in packages) its factory's
    default (``None`` is passed to it); for an open_clip model name the ``"openai"`` tag
    when the name has one, else open_clip's first listed tag, else None (a config without
    released weights, such as ``"skpeal-tiny"``: random weights); for a folder, an
    ``hf-hub:``/``local-dir:`` name or a config file, None (the weights, if any, come
    with the model).

    Parameters
    ----------
    model : str or path-like
        As for :func:`load_backbone`.
    pretrained : str, path-like or None
        As for :func:`load_backbone`.

    Returns
    -------
    pretrained : str or None
        The value :func:`load_backbone` uses.
    """
    if not (isinstance(pretrained, str) and pretrained == DEFAULT_WEIGHTS):
        return pretrained
    model = os.fspath(model) if isinstance(model, os.PathLike) else model
    if not isinstance(model, str) or model in _FACTORIES or ":" in model:
        return None
    if os.path.isdir(model) or model.endswith(".json"):
        return None
    tags = open_clip.list_pretrained_tags_by_model(model)
    if "openai" in tags:
        return "openai"
    return tags[0] if tags else None


def load_backbone(model: str, pretrained: str | None = None, *, shared: bool = False) -> Backbone:
    """Build a backbone on the CPU, in eval mode, with every parameter frozen.

    Parameters
    ----------
    model : str or path-like
        A name registered with :func:`register_backbone` (e.g. ``"skpeal-tiny"``), an
        open_clip model name (``"ViT-B-32"``), an open_clip schema (``"hf-hub:org/repo"``,
        ``"local-dir:/path"``), a local folder holding ``open_clip_config.json`` (and
        weights), or a local open_clip model-config JSON file.
    pretrained : str, path-like or None
        An open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"``), ``"default"``
        for the backbone's own weights (see :func:`resolve_pretrained`), a local weights
        file (``.safetensors``, or a torch file loaded with ``weights_only=True``), or
        None for a randomly initialised open_clip network (drawn from a fixed seed, so
        rebuilds are identical); a registered backbone's factory decides what None means
        (the offline backbone: its shipped weights at the default input size).
    shared : bool, default=False
        False: build the backbone from its files. True: build it once per process and
        hand out a structurally fresh module tree whose parameters share the frozen
        weight tensors of that first build (the estimator does this on every fit). The
        returned tree may be modified (LoRA replaces and wraps modules); its weight
        tensors must not be modified in place. Buffers (e.g. BatchNorm statistics) are
        copies. The process-wide copy is keyed by ``(model, pretrained)`` and by the size
        and modification time of a local file or folder named by either; free it with
        :func:`clear_backbone_cache`.

    Returns
    -------
    backbone : Backbone
        The model, its tokenizer and its preprocessing.

    Raises
    ------
    ValueError
        If the name or tag is unknown or a given file does not exist.
    RuntimeError
        If the weights of a tag are not on this machine and cannot be downloaded; the
        message says how to use a local file instead. This is decided before any
        download is attempted, so it fails in about a second, not after retries.
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    pretrained = resolve_pretrained(model, pretrained)
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a backbone name or a path, got {model!r}")
    if pretrained is not None and not isinstance(pretrained, str):
        raise ValueError(f"pretrained must be a tag, a file path or None, got {pretrained!r}")

    if shared:
        return _shared_copy(_template(model, pretrained))
    return _build(model, pretrained)


def _build(model, pretrained) -> Backbone:
    if model in _FACTORIES:
        backbone = _FACTORIES[model](pretrained)
    else:
        backbone = load_open_clip(model, pretrained, registered=list(_FACTORIES))
    backbone.model.eval()
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    return backbone


# -- process-wide reuse ------------------------------------------------------------------

_TEMPLATES: dict[tuple, Backbone] = {}
_LOCK = threading.Lock()


def clear_backbone_cache() -> None:
    """Forget the backbones kept for reuse by ``load_backbone(..., shared=True)``.

    Every fit of :class:`skpeal.CLIPAdapterClassifier` reuses the frozen weights of a
    backbone built once per process (keyed by ``model`` and ``pretrained``). Call this to
    free that memory, or after changing files a backbone is built from in a way that
    keeps their size and modification time (a changed local weights file or folder is
    noticed without it). Models already handed out keep working.
    """
    with _LOCK:
        _TEMPLATES.clear()


def _stamp(value):
    """Size and modification time of a local file or folder named by ``value``, else None."""
    if not isinstance(value, str):
        return None
    path = value.split(":", 1)[1] if value.startswith("local-dir:") else value
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns


def _template(model, pretrained) -> Backbone:
    key = (model, pretrained, _stamp(model), _stamp(pretrained))
    with _LOCK:
        backbone = _TEMPLATES.get(key)
        if backbone is None:
            backbone = _build(model, pretrained)
            for old in [k for k in _TEMPLATES if k[:2] == key[:2]]:  # files changed
                del _TEMPLATES[old]
            _TEMPLATES[key] = backbone
        return backbone


def _shared_copy(template: Backbone) -> Backbone:
    """A fresh module tree over the template's weight tensors (new Parameter objects)."""
    model = template.model
    memo = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b.detach().clone()
    return dataclasses.replace(template, model=copy.deepcopy(model, memo))


# -- offline default backbone --------------------------------------------------------------


#: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, aligned through the ImageNet head;
#: needs the ``offline`` extra (its packages are imported only when it is built). See
#: :mod:`skpeal.backbones.offline`.
register_backbone(offline.MODEL_NAME, offline.build_backbone)
