"""Deprecated: the feature cache moved to :mod:`skpeal.features`.

Kept for one release; importing it emits a ``FutureWarning``. Use
``skpeal.features.get_feature_cache`` / ``clear_feature_cache`` / ``FeatureCache``.
"""

import warnings

from .features import FeatureCache, clear_feature_cache, get_feature_cache
from .features.keys import module_digest
from .images import file_key

__all__ = ["FeatureCache", "clear_feature_cache", "file_key", "get_feature_cache",
           "module_digest"]

warnings.warn(
    "skpeal.cache is deprecated and will be removed in the next release; use "
    "skpeal.features (get_feature_cache, clear_feature_cache, FeatureCache)",
    FutureWarning,
    stacklevel=2,
)
