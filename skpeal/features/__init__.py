"""Image features of adapted models and the process-wide feature cache.

With a frozen image tower (prompt tuning, or LoRA on the text tower only) an image's
features do not depend on the adapter, so each image is encoded once and its features are
kept in a process-wide, byte-bounded cache shared by every estimator (across epochs,
``fit`` calls, predictions and active-learning rounds). The public part is the cache's
control: :func:`get_feature_cache`, :func:`clear_feature_cache` and :class:`FeatureCache`.

Examples
--------
>>> from skpeal.features import get_feature_cache
>>> cache = get_feature_cache()
>>> cache.max_bytes = 256 * 2**20   # 256 MiB
>>> sorted(cache.stats())
['entries', 'evictions', 'hits', 'max_bytes', 'misses', 'nbytes', 'spaces', 'stores']
>>> cache.clear()
"""

from .cache import FeatureCache, clear_feature_cache, get_feature_cache

__all__ = ["FeatureCache", "clear_feature_cache", "get_feature_cache"]
