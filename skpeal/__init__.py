"""skpeal: calibrated, parameter-efficient active learning with CLIP models.

The estimator is :class:`skpeal.CLIPAdapterClassifier`; query strategies are in
:mod:`skpeal.strategies`, metrics in :mod:`skpeal.metrics`, the active-learning protocol
runner in :mod:`skpeal.experiment`. ``import skpeal`` has no side effect and imports
neither torch nor open_clip: the estimator is imported on first access.
"""

from typing import TYPE_CHECKING

from ._version import __version__

__all__ = ["CLIPAdapterClassifier", "__version__"]

if TYPE_CHECKING:  # what IDEs and type checkers see
    from .estimator import CLIPAdapterClassifier


def __getattr__(name):
    # Lazy so that ``import skpeal.metrics`` does not pull in torch and open_clip.
    if name == "CLIPAdapterClassifier":
        from .estimator import CLIPAdapterClassifier

        return CLIPAdapterClassifier
    raise AttributeError(f"module 'skpeal' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
