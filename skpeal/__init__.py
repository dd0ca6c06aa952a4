"""skpeal: calibrated, parameter-efficient active learning with CLIP models.

The estimator lives in :mod:`skpeal.estimator`, query strategies in
:mod:`skpeal.strategies`, metrics in :mod:`skpeal.metrics`.
"""

__version__ = "0.1.0.dev0"

__all__ = ["CLIPAdapterClassifier", "__version__"]

# modAL 0.4.2.1 passes force_all_finite= to scikit-learn's check_X_y, which scikit-learn >= 1.8
# rejects: patch the name inside modAL only (see skpeal.modal_compat; undo with
# skpeal.modal_compat.disable() or SKPEAL_MODAL_COMPAT=0). Imports nothing heavy.
from . import modal_compat as _modal_compat  # noqa: E402

_modal_compat._enable_from_env()


def __getattr__(name):
    # Imported lazily so that ``import skpeal.metrics`` does not pull in torch and open_clip.
    if name == "CLIPAdapterClassifier":
        from .estimator import CLIPAdapterClassifier

        return CLIPAdapterClassifier
    raise AttributeError(f"module 'skpeal' has no attribute {name!r}")
