"""Deprecated: image input moved to the internal :mod:`skpeal.images`.

Kept for one release; importing it emits a ``FutureWarning``. Pass images straight to
:class:`skpeal.CLIPAdapterClassifier` instead.
"""

import warnings

from .images import ImageSource, Preprocessor, check_images, iter_batches, random_resized_crop_flip

__all__ = ["ImageSource", "Preprocessor", "check_images", "iter_batches",
           "random_resized_crop_flip"]

warnings.warn(
    "skpeal.data is deprecated and will be removed in the next release; its contents are "
    "internal (skpeal.images): pass images straight to CLIPAdapterClassifier",
    FutureWarning,
    stacklevel=2,
)
