"""Parameter-efficient adapters: CoOp prompt vectors and LoRA (through peft).

Only this package (with :mod:`skpeal.backbones`) touches open_clip and peft internals.
"""

from .lora import (
    LORA_GROUPS,
    LORA_TARGETS,
    LORA_TOWERS,
    SplitAttention,
    attach_lora,
    resolve_lora_targets,
    split_attention,
)
from .prompt import PromptLearner, text_encoder_for

__all__ = [
    "LORA_GROUPS",
    "LORA_TARGETS",
    "LORA_TOWERS",
    "PromptLearner",
    "SplitAttention",
    "attach_lora",
    "resolve_lora_targets",
    "split_attention",
    "text_encoder_for",
]
