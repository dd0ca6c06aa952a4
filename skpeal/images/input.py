"""Input coercion: turn what users pass as ``X`` into batches of preprocessed images.

Accepted ``X``:

* numpy arrays ``(n, H, W)`` (grey) or ``(n, H, W, C)`` with ``C`` in 1, 3, 4 (channels
  last). Pixel values by their dtype's real range: ``uint8`` divided by 255, ``uint16``,
  ``uint32`` and ``uint64`` by their maximum (65535, ...), signed integers as 8-bit
  values in ``[0, 255]``, floats in ``[0, 1]``; values outside are refused;
* torch tensors ``(n, C, H, W)`` (channels first) or ``(n, H, W)``, same value ranges;
* sequences (list, tuple, 1-D object array) of file paths, ``PIL.Image`` objects, or
  ``(H, W[, C])`` arrays.

Image files and ``PIL.Image`` objects are decoded by their mode's range: 8-bit modes
(``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ...) through Pillow's RGB conversion, 16-bit modes
(``I;16``, ``I;16B``, ...) divided by 65535, 32-bit integers (``I``) by 2**31 - 1
(negative values refused), floats (``F``) taken as ``[0, 1]`` (values outside refused).
Files of formats whose deepest mode is 16 bits (PNG, PGM/PPM) that Pillow opens as ``I``
are divided by 65535 like their ``I;16`` twins. An image file's EXIF orientation is
applied (as browsers and the labelling page show it), so the model sees it upright.
Empty (0-pixel) images are refused. Grey images become three channels, alpha is dropped.
Every image then goes through the backbone's own preprocessing parameters (resize mode,
interpolation, input size, mean/std), in torch, identically for every kind of input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps

from .fingerprints import item_digest, row_digests
from .transforms import Preprocessor, random_resized_crop_flip

__all__ = ["ImageSource", "check_images", "iter_batches"]


def _to_three_channels(t: torch.Tensor) -> torch.Tensor:
    """(b, c, h, w) -> (b, 3, h, w): grey repeated, alpha dropped."""
    c = t.shape[1]
    if c == 1:
        return t.expand(-1, 3, -1, -1)
    if c == 4:
        return t[:, :3]
    if c != 3:
        raise ValueError(f"images must have 1, 3 or 4 channels, got {c}")
    return t


#: Unsigned integer dtypes wider than 8 bits, scaled by their bit depth (their maximum).
_UNSIGNED_MAX = {
    torch.uint16: float(2**16 - 1),
    torch.uint32: float(2**32 - 1),
    torch.uint64: float(2**64 - 1),
}
#: Mode ``I`` (32-bit signed integer pixels): non-negative values divided by this.
_MODE_I_MAX = float(2**31 - 1)


def _unsigned_to_unit(t: torch.Tensor) -> torch.Tensor:
    """uint16 / uint32 / uint64 pixels -> float32 in [0, 1], divided by the dtype's maximum."""
    return (t.to(torch.float64) / _UNSIGNED_MAX[t.dtype]).to(torch.float32)


def _check_dtype(t: torch.Tensor, what: str) -> None:
    if t.dtype == torch.bool:
        raise TypeError(f"{what}: boolean images are not supported; pass uint8 or float")
    if t.dtype.is_complex:
        raise TypeError(f"{what}: complex pixel values ({t.dtype}) are not supported")


def _scale_to_unit(t: torch.Tensor, what: str) -> torch.Tensor:
    """Pixels -> float32 in [0, 1] by the dtype's real range.

    uint8 / 255; uint16, uint32, uint64 by their maximum; other (signed) integers are
    8-bit values in [0, 255]; floats must already lie in [0, 1].
    """
    _check_dtype(t, what)
    if t.dtype in _UNSIGNED_MAX:
        return _unsigned_to_unit(t)
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.dtype.is_floating_point:
        if t.numel() and (int(t.min()) < 0 or int(t.max()) > 255):
            raise ValueError(
                f"{what}: {str(t.dtype).removeprefix('torch.')} pixel values must lie in "
                f"[0, 255] (signed integers are read as 8-bit values; got range "
                f"[{int(t.min())}, {int(t.max())}]); pass uint16 or uint32 arrays for "
                "deeper images"
            )
        return t.float() / 255.0
    return _check_unit_float(t.float(), what)


def _check_unit_float(t: torch.Tensor, what: str) -> torch.Tensor:
    if torch.isnan(t).any():
        raise ValueError(f"{what} contains NaN pixel values")
    if torch.isinf(t).any():
        raise ValueError(f"{what} contains infinite pixel values")
    if t.numel() and (float(t.min()) < 0.0 or float(t.max()) > 1.0):
        raise ValueError(
            f"{what}: float pixel values must lie in [0, 1] (got range "
            f"[{float(t.min()):.3g}, {float(t.max()):.3g}]); divide by the maximum, "
            "or pass uint8 images in [0, 255]"
        )
    return t


def _check_not_empty(h: int, w: int, what: str) -> None:
    if h == 0 or w == 0:
        raise ValueError(f"{what} is an empty image ({h}x{w} pixels): every image needs pixels")


def _array_to_chw(a: np.ndarray, what: str) -> torch.Tensor:
    """One image array (H, W) or (H, W, C) -> float tensor (1, 3, H, W) in [0, 1]."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"{what} must be an (H, W) or (H, W, C) array, got shape {a.shape}")
    _check_not_empty(a.shape[0], a.shape[1], what)
    t = _scale_to_unit(_as_tensor(a), what)
    return _to_three_channels(t.permute(2, 0, 1)[None])


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    if a.dtype.kind not in "biufc":
        raise TypeError(f"image arrays must hold numbers, got dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("="), copy=False))


#: File formats at most 16 bits deep per channel: their mode "I" images hold 0..65535.
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "PPM"})


def _pil_to_chw(img: Image.Image, what: str = "image") -> torch.Tensor:
    """A PIL image of any mode -> float tensor (1, 3, H, W) in [0, 1], by the mode's range.

    8-bit modes go through Pillow's conversion to RGB (alpha dropped); ``I;16*`` modes are
    divided by 65535, mode ``I`` (32-bit signed) by 2**31 - 1 with negative values refused,
    mode ``F`` must lie in [0, 1]. ``convert("RGB")`` would clip the deep modes to 255.
    """
    w, h = img.size
    _check_not_empty(h, w, what)
    mode = img.mode
    if mode.startswith("I;16"):
        t = torch.from_numpy(np.asarray(img).astype(np.float32) / 65535.0)
    elif mode == "I" and getattr(img, "format", None) in _SIXTEEN_BIT_FORMATS:
        # 16-bit PGM/PPM (and some 16-bit PNGs) open as 32-bit "I", holding 0..65535
        t = torch.from_numpy(np.asarray(img).astype(np.float32) / 65535.0)
    elif mode == "I":
        a = np.asarray(img)
        if a.min() < 0:
            raise ValueError(
                f"{what}: 32-bit integer (mode 'I') pixel values must not be negative, got "
                f"minimum {int(a.min())}"
            )
        t = torch.from_numpy((a / _MODE_I_MAX).astype(np.float32))
    elif mode == "F":
        t = _check_unit_float(torch.from_numpy(np.asarray(img, dtype=np.float32).copy()),
                              f"{what} (mode 'F')")
    else:
        try:
            rgb = img.convert("RGB")
        except ValueError:  # modes Pillow cannot convert directly, e.g. "La"
            try:
                rgb = img.convert("RGBA").convert("RGB")
            except ValueError:
                raise ValueError(f"{what}: Pillow image mode {mode!r} is not supported") from None
        return TF.pil_to_tensor(rgb).float().div_(255.0)[None]
    return t[None, None].expand(-1, 3, -1, -1)


def _load_path(path: str) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            img.load()
            fmt = img.format
            upright = ImageOps.exif_transpose(img)  # EXIF orientation, as a browser shows it
            if upright is not img:
                upright.format = fmt  # (the transposed copy forgets its file format)
            return _pil_to_chw(upright, f"image file {path!r}")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image file {path!r}: {exc}") from None


class ImageSource:
    """Validated images that can be read in batches of preprocessed tensors.

    Use :func:`check_images` to build one. Array and tensor inputs are converted once;
    paths are opened only when their batch is read, so memory does not grow with the
    number of paths.

    Attributes
    ----------
    kind : {"array", "items"}
        ``"array"``: one stacked tensor; ``"items"``: a list of paths / PIL / arrays.
    """

    def __init__(self, data, kind: str):
        self._data = data
        self.kind = kind
        self._fingerprints = None

    def __len__(self) -> int:
        return len(self._data)

    @property
    def reads_files(self) -> bool:
        """Whether reading a batch opens and decodes files (then worth parallel workers)."""
        return self.kind == "items" and any(isinstance(x, str) for x in self._data)

    def batch(self, indices, preprocess: Preprocessor, device=None, *, augment=None,
              scale=(0.5, 1.0)) -> torch.Tensor:
        """Decoded, preprocessed (and optionally augmented) images ``(len(indices), 3, S, S)``.

        The one place images are decoded and augmented: training batches, encoded
        feature views and decoding workers all come here.

        Parameters
        ----------
        indices : array-like of int
        preprocess : Preprocessor
        device : torch.device or None, default=None
            Array inputs are moved there as raw pixels (uint8 stays uint8) and
            preprocessed there, so a GPU does the resizing; None or CPU: on the CPU.
            Other inputs are always preprocessed on the CPU.
        augment : torch.Generator, sequence of torch.Generator or None, default=None
            Draws a random resized crop and flip of every image
            (:func:`~skpeal.images.transforms.random_resized_crop_flip`): one generator
            for the batch, or one per image. None: no augmentation.
        scale : tuple of float, default=(0.5, 1.0)
            Area range of the crops.

        Returns
        -------
        images : torch.Tensor of shape (len(indices), 3, S, S), float32
        """
        x = self._decode(indices, preprocess, device)
        if augment is not None:
            x = random_resized_crop_flip(x, augment, scale=scale)
        return x

    def _decode(self, indices, preprocess, device):
        if self.kind == "array":
            idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
            raw = self._data[idx]
            if device is not None and torch.device(device).type == "cuda":
                raw = raw.pin_memory().to(device, non_blocking=True)
            raw = _scale_to_unit(raw, "X")
            return preprocess(_to_three_channels(raw))
        out = []
        for i in np.asarray(indices, dtype=np.int64):
            item = self._data[int(i)]
            if isinstance(item, Image.Image):
                t = _pil_to_chw(item, f"X[{int(i)}]")
            elif isinstance(item, np.ndarray):
                t = _array_to_chw(item, f"X[{int(i)}]")
            else:
                t = _load_path(item)
            out.append(preprocess(t))
        return torch.cat(out)

    def fingerprints(self) -> list[bytes]:
        """One 16-byte content digest per image, computed once per source.

        Array and tensor rows, PIL images and in-memory arrays are identified by their
        pixel bytes, dtype and shape; files by real path, size, modification and change
        time, inode and device (see :func:`skpeal.images.fingerprints.file_key`). Equal
        digests mean equal inputs to the preprocessing.

        Returns
        -------
        digests : list of bytes
        """
        if self._fingerprints is None:
            if self.kind == "array":
                self._fingerprints = row_digests(self._data)
            else:
                self._fingerprints = [item_digest(x) for x in self._data]
        return self._fingerprints


def check_images(X) -> ImageSource:
    """Validate image input ``X`` and wrap it for batched reading.

    Parameters
    ----------
    X : array-like, torch.Tensor or sequence
        See the module docstring for the accepted forms.

    Returns
    -------
    source : ImageSource

    Raises
    ------
    ValueError
        Empty input, wrong ranks or channel counts, NaN or out-of-range pixels, missing
        files (named).
    TypeError
        An unsupported type, e.g. a string instead of a list of paths.
    """
    if isinstance(X, ImageSource):
        return X
    if isinstance(X, (str, bytes, os.PathLike, Image.Image)):
        raise TypeError(
            f"X must be a collection of images, got a single {type(X).__name__}; wrap it in a list"
        )
    if isinstance(X, torch.Tensor):
        t = X.detach().cpu()
        if t.ndim == 3:
            t = t[:, None]
        if t.ndim != 4:
            raise ValueError(
                f"a tensor X must have shape (n, C, H, W) or (n, H, W), got {tuple(X.shape)}"
            )
        return _from_nchw(t)
    if isinstance(X, np.ndarray) and X.dtype.kind in "US":
        X = X.astype(object)  # an array of path strings
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 3:
            t = _as_tensor(X)[:, None]
        elif X.ndim == 4:
            if X.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    f"a 4-D array X must be channels-last (n, H, W, C) with C in 1, 3, 4; "
                    f"got shape {X.shape}"
                )
            t = _as_tensor(X).permute(0, 3, 1, 2)
        else:
            raise ValueError(
                f"an array X must have shape (n, H, W) or (n, H, W, C), got shape {X.shape} "
                f"({X.ndim}-D)"
            )
        return _from_nchw(t)
    if isinstance(X, (Sequence, np.ndarray)):
        items = list(X.ravel()) if isinstance(X, np.ndarray) else list(X)
        if isinstance(X, np.ndarray) and X.ndim != 1:
            raise ValueError(f"an object array X must be 1-D, got shape {X.shape}")
        if not items:
            raise ValueError("X is empty: at least one image is required")
        if all(isinstance(x, np.ndarray) and x.dtype != object for x in items):
            shapes = {x.shape for x in items}
            if len(shapes) == 1:
                return check_images(np.stack(items))
        out = []
        for i, x in enumerate(items):
            if isinstance(x, (str, os.PathLike)):
                p = os.fspath(x)
                if os.path.isdir(p):
                    raise ValueError(f"X[{i}]: {p!r} is a folder, not an image file")
                if not os.path.isfile(p):
                    raise ValueError(f"X[{i}]: image file {p!r} does not exist")
                out.append(p)
            elif isinstance(x, Image.Image):
                _check_not_empty(x.size[1], x.size[0], f"X[{i}]")
                out.append(x)
            elif isinstance(x, np.ndarray):
                _array_to_chw(x, f"X[{i}]")  # validate now, not in the middle of training
                out.append(x)
            else:
                raise TypeError(
                    f"X[{i}] is a {type(x).__name__}; expected a file path, a PIL image or "
                    "an image array"
                )
        return ImageSource(out, "items")
    raise TypeError(
        f"X must be an image array, a tensor, or a sequence of paths/PIL images; "
        f"got {type(X).__name__}"
    )


def _from_nchw(t: torch.Tensor) -> ImageSource:
    if t.shape[0] == 0:
        raise ValueError("X is empty: at least one image is required")
    if t.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"images must have 1, 3 or 4 channels, got {t.shape[1]} (shape {tuple(t.shape)})"
        )
    _check_dtype(t, "X")
    if t.shape[2] == 0 or t.shape[3] == 0:
        raise ValueError(f"X holds empty images ({t.shape[2]}x{t.shape[3]} pixels): every "
                         "image needs pixels")
    if t.dtype in _UNSIGNED_MAX:  # few torch ops support them: scale once, here
        t = _unsigned_to_unit(t)
    _validate_pixels(t, "X")  # range / NaN once, up front
    return ImageSource(t, "array")


def _validate_pixels(t: torch.Tensor, what: str, chunk: int = 64) -> None:
    """The checks of :func:`_scale_to_unit`, a few rows at a time (no full-size copy)."""
    if t.dtype == torch.uint8:
        return
    for start in range(0, t.shape[0], chunk):
        _scale_to_unit(t[start : start + chunk], what)


def iter_batches(n: int, batch_size: int):
    """Consecutive index ranges ``range(i, i + batch_size)`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield np.arange(start, min(start + batch_size, n))
