"""Parameter-efficient adapters: CoOp prompt vectors and LoRA (through peft).

Only this package (with :mod:`skpeal.backbones`) touches open_clip and peft internals.
"""

from .lora import LORA_TARGETS, LORA_TOWERS, attach_lora, resolve_lora_targets
from .prompt import PromptLearner, text_encoder_for

__all__ = [
    "LORA_TARGETS",
    "LORA_TOWERS",
    "PromptLearner",
    "attach_lora",
    "resolve_lora_targets",
    "text_encoder_for",
]
