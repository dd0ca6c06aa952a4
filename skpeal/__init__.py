"""skpeal: calibrated, parameter-efficient active learning with CLIP models.

The estimator lives in :mod:`skpeal.estimator`, query strategies in
:mod:`skpeal.strategies`, metrics in :mod:`skpeal.metrics`.
"""

__version__ = "0.1.0.dev0"

__all__ = ["CLIPAdapterClassifier", "__version__"]


def __getattr__(name):
    # Imported lazily so that ``import skpeal.metrics`` does not pull in torch and open_clip.
    if name == "CLIPAdapterClassifier":
        from .estimator import CLIPAdapterClassifier

        return CLIPAdapterClassifier
    raise AttributeError(f"module 'skpeal' has no attribute {name!r}")
