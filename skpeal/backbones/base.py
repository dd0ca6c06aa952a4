"""What a loaded backbone is: :class:`Backbone`, shared by every way of building one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TINY_MODEL", "Backbone"]

#: Name of the tiny randomly initialised CLIP that tests and examples use (32 px images,
#: 16-d embeddings, one transformer block per tower, open_clip's own BPE tokenizer).
#: With ``pretrained=None`` its weights are drawn from a fixed seed, so every build is
#: identical; ``pretrained=<file>`` loads a checkpoint saved from it.
TINY_MODEL = "skpeal-tiny"


@dataclass
class Backbone:
    """A loaded dual encoder and what is needed to feed it.

    Parameters
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
        The open_clip resize mode (``"shortest"``: resize the short side then centre-crop).
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
