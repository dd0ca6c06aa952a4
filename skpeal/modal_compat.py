"""Deprecated: the modAL shim moved to :mod:`skpeal.compat.modal`.

Kept for one release; importing it emits a ``FutureWarning``. The shim is now enabled by
``import skpeal.strategies`` (not by ``import skpeal``), or explicitly with
``skpeal.compat.modal.enable()``.
"""

import warnings

from .compat.modal import ENV_VAR, disable, enable, is_active

__all__ = ["ENV_VAR", "disable", "enable", "is_active"]

warnings.warn(
    "skpeal.modal_compat is deprecated and will be removed in the next release; use "
    "skpeal.compat.modal (enabled by importing skpeal.strategies)",
    FutureWarning,
    stacklevel=2,
)
