"""Image input (internal): coercion of ``X``, transforms, content fingerprints.

Not part of the public API: what ``X`` may be is documented on
:class:`skpeal.CLIPAdapterClassifier` and in the user guide.
"""

from .fingerprints import file_key
from .input import ImageSource, check_images, iter_batches
from .transforms import Preprocessor, random_resized_crop_flip

__all__ = [
    "ImageSource",
    "Preprocessor",
    "check_images",
    "file_key",
    "iter_batches",
    "random_resized_crop_flip",
]
