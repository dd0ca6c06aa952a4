"""The torch side (internal): the adapted CLIP module, its training loop, its inference.

Not part of the public API; the estimator is. ``CLIPAdapterClassifier.model_`` is an
:class:`AdaptedCLIP`.
"""

from .inference import predict_logits
from .model import AdaptedCLIP
from .training import lr_schedule, train

__all__ = ["AdaptedCLIP", "lr_schedule", "predict_logits", "train"]
