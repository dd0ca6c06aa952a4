"""Server-side thumbnails (Pillow), cached as files in the project folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, ImageOps

from .._io import atomic_path

__all__ = ["THUMBNAIL_SIZES", "ThumbnailCache", "make_thumbnail"]

#: The sizes the page asks for (the browser picks one for its pixel ratio and card size).
THUMBNAIL_SIZES = (192, 384, 768)


def make_thumbnail(path, size=192) -> bytes:
    """A PNG of the image at ``path`` fitting in ``size`` x ``size`` pixels.

    Images smaller than ``size`` are enlarged by whole-pixel repetition (nearest), so a
    28-pixel image is still visible; larger ones are reduced with a good filter. EXIF
    orientation is applied.

    Parameters
    ----------
    path : str or path-like
    size : int, default=192

    Returns
    -------
    png : bytes
    """
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
        w, h = img.size
        scale = size / max(w, h)
        if scale >= 2:
            k = int(scale)
            img = img.resize((w * k, h * k), Image.Resampling.NEAREST)
        elif scale < 1:
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=False)
        return buf.getvalue()


class ThumbnailCache:
    """Thumbnails of a project's images, made once and kept in ``folder``.

    Parameters
    ----------
    folder : path-like
        Where the files go (``<project>/thumbs``).
    size : int, default=192
    """

    def __init__(self, folder, size=192):
        self.folder = Path(folder)
        self.size = int(size)

    def get(self, image_id: int, path, size=None) -> bytes:
        """The thumbnail of image ``image_id`` (whose file is ``path``).

        Parameters
        ----------
        image_id : int
        path : path-like
        size : int, optional
            Its largest side in pixels (default: the cache's ``size``).

        Returns
        -------
        png : bytes
        """
        size = self.size if size is None else int(size)
        cached = self.folder / f"{int(image_id)}-{size}.png"
        try:
            if cached.stat().st_mtime >= os.stat(path).st_mtime:
                return cached.read_bytes()
        except FileNotFoundError:
            pass
        data = make_thumbnail(path, size)
        with atomic_path(cached) as tmp:
            tmp.write_bytes(data)
        return data
