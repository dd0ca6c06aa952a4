"""Which files are images: one table, read by the image-folder loader and the labelling
session's folder listing (importing it imports nothing heavy: a new ``skpeal label``
project lists its folder before torch or scikit-learn is loaded)."""

#: File extensions (lower case) treated as images.
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".gif", ".jpeg", ".jpg", ".png", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}
)
