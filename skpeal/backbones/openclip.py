"""open_clip backbones: names and tags, local folders and configs, local weights.

With :mod:`skpeal.adapters`, the only place that imports open_clip.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from .base import Backbone

__all__ = ["load_open_clip"]

_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(_CONFIG_DIR)

# Seed used for randomly initialised backbones (``pretrained=None``), so that a rebuilt
# backbone (after unpickling, in another process) is the same network.
_RANDOM_INIT_SEED = 0


def load_open_clip(model: str, pretrained: str | None, *, registered=()) -> Backbone:
    """Build an open_clip model from a name, schema, folder or config file.

    See :func:`skpeal.backbones.load_backbone`; ``registered`` (the registry's names) only
    completes the message of an unknown name.
    """
    name = model
    kwargs: dict[str, Any] = {}
    if os.path.isdir(model):
        name = "local-dir:" + os.path.abspath(model)
        pretrained = None  # the folder holds its own weights
    elif model.endswith(".json"):
        if not os.path.isfile(model):
            raise ValueError(f"model config file {model!r} does not exist")
        _check_model_config(model)
        open_clip.add_model_config(model)
        name = Path(model).stem
    elif ":" not in model and model not in open_clip.list_models():
        known = [*sorted(registered), *open_clip.list_models()]
        raise ValueError(
            f"unknown model {model!r}: not a registered skpeal backbone, an open_clip model "
            f"name, a folder or a config file. Known names include {known[:8]}..."
        )

    if pretrained is not None:
        if os.path.isfile(pretrained):
            pass  # open_clip loads local files itself (weights_only=True)
        elif ":" in name:
            raise ValueError(
                f"pretrained={pretrained!r} is not a file; with {name!r} leave it None"
            )
        else:
            cfg = open_clip.get_pretrained_cfg(name, pretrained)
            if not cfg:
                tags = open_clip.list_pretrained_tags_by_model(name)
                raise ValueError(
                    f"pretrained={pretrained!r} is neither a local file nor a tag of {name!r}; "
                    f"known tags: {tags}"
                )
            local = _cached_weights(cfg)
            if local is None:
                _require_network(name, pretrained)
            else:
                kwargs["force_preprocess_cfg"] = {
                    k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg
                }
                if cfg.get("quick_gelu"):
                    kwargs["force_quick_gelu"] = True
                pretrained = local

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        try:
            net = open_clip.create_model(
                name, pretrained=pretrained, pretrained_text=False, pretrained_image=False,
                **kwargs
            )
        except Exception as exc:  # torch.load raises many types for a file of other bytes
            if pretrained is None or not os.path.isfile(pretrained):
                raise
            raise ValueError(
                f"pretrained={pretrained!r} cannot be loaded as weights of {name!r} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                "give a .safetensors / .pt state dict saved from this model, or "
                "pretrained=None for random weights"
            ) from None
    tokenizer = open_clip.get_tokenizer(name)
    return _backbone_from_open_clip(net, tokenizer)


def _check_model_config(path: str) -> None:
    """A model config file must be a JSON object with open_clip's vision and text parts."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"model config file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise ValueError(
            f"model config file {path!r} is not an open_clip model config: it needs a JSON "
            "object with 'embed_dim', 'vision_cfg' and 'text_cfg'"
        )


def _backbone_from_open_clip(net: nn.Module, tokenizer) -> Backbone:
    pp = open_clip.get_model_preprocess_cfg(net)
    size = pp.get("size", 224)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ValueError(f"non-square input size {size} is not supported")
        size = size[0]
    return Backbone(
        model=net,
        tokenizer=tokenizer,
        image_size=int(size),
        mean=tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        interpolation=pp.get("interpolation", "bicubic"),
        resize_mode=pp.get("resize_mode", "shortest"),
    )


def _cached_weights(cfg: dict) -> str | None:
    """Local path of a tag's weights if they are already on this machine, else None."""
    if cfg.get("file"):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache  # only for hub tags
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            return None
        repo, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        stem = filename.rsplit(".", 1)[0]
        for candidate in (stem + ".safetensors", "open_clip_model.safetensors", filename):
            path = try_to_load_from_cache(repo, candidate)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    url = cfg.get("url", "")
    if url:
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def _offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _require_network(name: str, tag: str, timeout: float = 2.0) -> None:
    """Fail fast, with what to do, when a tag's weights would need a download that cannot happen."""
    advice = (
        f"the weights of {name!r} / pretrained={tag!r} are not on this machine and "
        "{why}. Download them on a machine with network access and pass the file: "
        f"CLIPAdapterClassifier(model={name!r}, pretrained='/path/to/weights.safetensors'), "
        "or copy the Hugging Face cache (~/.cache/huggingface) here. "
        "Unset HF_HUB_OFFLINE to allow downloads."
    )
    if _offline_requested():
        raise RuntimeError(advice.format(why="HF_HUB_OFFLINE is set, so nothing is downloaded"))
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError as exc:
        raise RuntimeError(
            advice.format(why=f"huggingface.co cannot be reached ({exc.__class__.__name__})")
        ) from None
