"""Backbones: the dual encoders that adapters tune, by name.

A backbone is described by two picklable values, ``model`` and ``pretrained``; the
estimator stores those and rebuilds the backbone from them, so a pickled estimator never
carries a copy of the backbone weights. Names come from a registry
(:func:`register_backbone`; ``"skpeal-tiny"`` and ``"effnet-lite0-minilm"`` ship with
skpeal) or from open_clip (model names, ``hf-hub:`` / ``local-dir:`` schemas, local
folders and model-config files).
"""

from .base import TINY_MODEL, Backbone
from .registry import (
    DEFAULT_WEIGHTS,
    clear_backbone_cache,
    list_backbones,
    load_backbone,
    register_backbone,
    resolve_pretrained,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "TINY_MODEL",
    "Backbone",
    "clear_backbone_cache",
    "list_backbones",
    "load_backbone",
    "register_backbone",
    "resolve_pretrained",
]
