"""Parameter-efficient adapters: CoOp prompt vectors and LoRA (through peft), by name.

Each adapter is one module of this package that registers itself with
:func:`register_adapter` (the model is peft's ``register_peft_method``); every public
module here is imported with the package, so a new adapter is one new file. The public
part is the registry (:func:`register_adapter`, :func:`adapter_names`), the LoRA target
helpers (:func:`resolve_lora_targets`, :func:`attach_lora`) and :func:`text_encoder_for`.
Only this package (with :mod:`skpeal.backbones`) touches open_clip and peft internals.
"""

import importlib
import pkgutil

from ._registry import (
    AdapterContext,
    AdapterKind,
    AdapterPart,
    adapter_kind,
    adapter_names,
    check_adapter_params,
    frozen_towers,
    register_adapter,
)
from .lora import (
    LORA_GROUPS,
    LORA_TARGETS,
    LORA_TOWERS,
    SplitAttention,
    attach_lora,
    resolve_lora_targets,
    split_attention,
)
from .prompt import PromptLearner, text_encoder_for  # noqa: F401 - PromptLearner: internal

register_adapter("prompt+lora", ("lora", "prompt"))  # both trained together


def _import_adapter_modules():
    """Import every public module of this package: each registers its adapter."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_adapter_modules()

__all__ = [
    "LORA_GROUPS",
    "LORA_TARGETS",
    "LORA_TOWERS",
    "AdapterContext",
    "AdapterKind",
    "AdapterPart",
    "SplitAttention",
    "adapter_kind",
    "adapter_names",
    "attach_lora",
    "check_adapter_params",
    "frozen_towers",
    "register_adapter",
    "resolve_lora_targets",
    "split_attention",
    "text_encoder_for",
]
