"""The backbone registry: names users pass as ``model``, and :func:`load_backbone`.

A backbone is described by two picklable values, ``model`` and ``pretrained``; the
estimator stores those and rebuilds the backbone from them, so a pickled estimator never
carries a copy of the backbone weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import open_clip

from . import offline
from .base import Backbone
from .openclip import load_open_clip

__all__ = ["list_backbones", "load_backbone", "register_backbone"]


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


def load_backbone(model: str, pretrained: str | None = None) -> Backbone:
    """Build a backbone on the CPU, in eval mode, with every parameter frozen.

    Parameters
    ----------
    model : str or path-like
        A name registered with :func:`register_backbone` (e.g. ``"skpeal-tiny"``), an
        open_clip model name (``"ViT-B-32"``), an open_clip schema (``"hf-hub:org/repo"``,
        ``"local-dir:/path"``), a local folder holding ``open_clip_config.json`` (and
        weights), or a local open_clip model-config JSON file.
    pretrained : str, path-like or None
        An open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"``), a local
        weights file (``.safetensors``, or a torch file loaded with
        ``weights_only=True``), or None for a randomly initialised network (drawn from a
        fixed seed, so rebuilds are identical).

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
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a backbone name or a path, got {model!r}")
    if pretrained is not None and not isinstance(pretrained, str):
        raise ValueError(f"pretrained must be a tag, a file path or None, got {pretrained!r}")

    if model in _FACTORIES:
        backbone = _FACTORIES[model](pretrained)
    else:
        backbone = load_open_clip(model, pretrained, registered=list(_FACTORIES))
    backbone.model.eval()
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    return backbone


# -- offline default backbone --------------------------------------------------------------


#: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, aligned through the ImageNet head;
#: needs the ``offline`` extra (its packages are imported only when it is built). See
#: :mod:`skpeal.backbones.offline`.
register_backbone(offline.MODEL_NAME, offline.build_backbone)
