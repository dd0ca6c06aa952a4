"""Loading open_clip backbones: names and tags, local checkpoints, test models.

This is one of the two places (with :mod:`skpeal.adapters`) that imports open_clip.
A backbone is described by two picklable values, ``model`` and ``pretrained``; the
estimator stores those and rebuilds the backbone from them, so a pickled estimator never
carries a copy of the backbone weights.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

__all__ = [
    "Backbone",
    "DEFAULT_WEIGHTS",
    "TINY_MODEL",
    "list_backbones",
    "load_backbone",
    "register_backbone",
    "resolve_pretrained",
]

#: The ``pretrained`` value that picks each backbone's own weights (the estimator's default).
DEFAULT_WEIGHTS = "default"

#: Name of the tiny randomly initialised CLIP that tests and examples use (32 px images,
#: 16-d embeddings, one transformer block per tower, open_clip's own BPE tokenizer).
#: With ``pretrained=None`` its weights are drawn from a fixed seed, so every build is
#: identical; ``pretrained=<file>`` loads a checkpoint saved from it.
TINY_MODEL = "skpeal-tiny"

_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(_CONFIG_DIR)

# Seed used for randomly initialised backbones (``pretrained=None``), so that a rebuilt
# backbone (after unpickling, in another process) is the same network.
_RANDOM_INIT_SEED = 0


@dataclass
class Backbone:
    """A loaded dual encoder and what is needed to feed it.

    Attributes
    ----------
    model : torch.nn.Module
        An open_clip model (``CLIP``, ``CustomTextCLIP``, ...) with ``encode_image``,
        ``encode_text`` and ``logit_scale``, in eval mode, on the CPU.
    tokenizer : callable
        Maps a list of strings to a ``LongTensor`` of token ids.
    image_size : int
        Side of the square input the image tower expects.
    mean, std : tuple of float
        Per-channel normalisation of the image tower.
    interpolation : str
        Resize interpolation (``"bicubic"``, ``"bilinear"``, ...).
    resize_mode : str
        open_clip resize mode (``"shortest"``: resize the short side then centre-crop).
    lora_targets : dict or None
        Module-name patterns per tower (``{"vision": (...), "text": (...)}``) that LoRA
        uses when a named target group (``"attention"``, ``"mlp"``) finds nothing in that
        tower, e.g. a convolutional image tower. None: no such defaults.
    """

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    lora_targets: dict | None = None


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
    pretrained : str, path-like or None

    Returns
    -------
    pretrained : str or None
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
        An open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"``), ``"default"``
        for the backbone's own weights (see :func:`resolve_pretrained`), a local weights
        file (``.safetensors``, or a torch file loaded with ``weights_only=True``), or
        None for a randomly initialised open_clip network (drawn from a fixed seed, so
        rebuilds are identical); a registered backbone's factory decides what None means
        (the offline backbone: its shipped weights at the default input size).

    Returns
    -------
    backbone : Backbone

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

    if model in _FACTORIES:
        backbone = _FACTORIES[model](pretrained)
    else:
        backbone = _load_open_clip(model, pretrained)
    backbone.model.eval()
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    return backbone


def _load_open_clip(model: str, pretrained: str | None) -> Backbone:
    name = model
    kwargs: dict[str, Any] = {}
    if os.path.isdir(model):
        name = "local-dir:" + os.path.abspath(model)
        pretrained = None  # the folder holds its own weights
    elif model.endswith(".json"):
        if not os.path.isfile(model):
            raise ValueError(f"model config file {model!r} does not exist")
        open_clip.add_model_config(model)
        name = Path(model).stem
    elif ":" not in model and model not in open_clip.list_models():
        raise ValueError(
            f"unknown model {model!r}: not a registered skpeal backbone, an open_clip model "
            f"name, a folder or a config file. Known names include {list_backbones()[:8]}..."
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
        net = open_clip.create_model(
            name, pretrained=pretrained, pretrained_text=False, pretrained_image=False, **kwargs
        )
    tokenizer = open_clip.get_tokenizer(name)
    return _backbone_from_open_clip(net, tokenizer)


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
            from huggingface_hub import try_to_load_from_cache
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


# -- offline default backbone --------------------------------------------------------------


def _effnet_lite0_minilm(pretrained: str | None) -> Backbone:
    # Imported here: ``import skpeal.backbones`` neither loads nor builds anything of it.
    from ._offline_backbone import build_backbone

    return build_backbone(pretrained)


#: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, aligned through the ImageNet head;
#: needs the ``offline`` extra. See :mod:`skpeal._offline_backbone`.
register_backbone("effnet-lite0-minilm", _effnet_lite0_minilm)
