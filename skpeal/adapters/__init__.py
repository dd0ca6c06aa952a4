"""Parameter-efficient adapters: CoOp prompt vectors and LoRA (through peft).

The public part is the LoRA target helpers (:func:`resolve_lora_targets`,
:func:`attach_lora`) and :func:`text_encoder_for`. Only this package (with
:mod:`skpeal.backbones`) touches open_clip and peft internals.
"""

from .lora import LORA_TARGETS, LORA_TOWERS, attach_lora, resolve_lora_targets
from .prompt import PromptLearner, text_encoder_for  # noqa: F401 - PromptLearner: internal

__all__ = [
    "LORA_TARGETS",
    "LORA_TOWERS",
    "attach_lora",
    "resolve_lora_targets",
    "text_encoder_for",
]
