"""skpeal: calibrated, parameter-efficient active learning with CLIP models."""

__version__ = "0.1.0.dev0"

from .estimator import CLIPAdapterClassifier  # noqa: E402

__all__ = ["CLIPAdapterClassifier", "__version__"]
