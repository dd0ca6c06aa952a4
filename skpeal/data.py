"""Input coercion: turn what users pass as ``X`` into normalised image batches.

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
Empty (0-pixel) images are refused. Grey images become three channels, alpha is dropped.
Every image then goes through the backbone's own preprocessing parameters (resize mode,
interpolation, input size, mean/std), in torch, identically for every kind of input.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

__all__ = ["ImageSource", "Preprocessor", "check_images"]


class Preprocessor:
    """Resize, crop and normalise ``[0, 1]`` image tensors for one backbone.

    Parameters
    ----------
    image_size : int
        Side of the square model input.
    mean, std : sequence of float
        Per-channel normalisation.
    interpolation : str, default="bicubic"
    resize_mode : {"shortest", "squash", "longest"}, default="shortest"
        ``"shortest"``: resize the short side to ``image_size`` and centre-crop (open_clip's
        default); ``"squash"``: resize both sides; ``"longest"``: resize the long side and
        pad with zeros.
    """

    def __init__(self, image_size, mean, std, interpolation="bicubic", resize_mode="shortest"):
        self.image_size = int(image_size)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.interpolation = InterpolationMode(interpolation)
        if resize_mode not in ("shortest", "squash", "longest"):
            raise ValueError(f"unsupported resize_mode {resize_mode!r}")
        self.resize_mode = resize_mode

    @property
    def signature(self) -> tuple:
        """Everything that determines the output: a hashable tuple (part of cache keys)."""
        return (
            type(self).__name__,
            self.image_size,
            tuple(self.mean),
            tuple(self.std),
            self.interpolation.value,
            self.resize_mode,
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocess a float batch ``(b, 3, h, w)`` in ``[0, 1]``; returns ``(b, 3, S, S)``."""
        s = self.image_size
        h, w = images.shape[-2:]
        if (h, w) != (s, s):
            if self.resize_mode == "squash":
                images = TF.resize(images, [s, s], self.interpolation, antialias=True)
            elif self.resize_mode == "shortest":
                images = TF.resize(images, s, self.interpolation, antialias=True)
                images = TF.center_crop(images, [s, s])
            else:
                scale = s / max(h, w)
                nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
                images = TF.resize(images, [nh, nw], self.interpolation, antialias=True)
                top, left = (s - nh) // 2, (s - nw) // 2
                images = TF.pad(images, [left, top, s - nw - left, s - nh - top], fill=0.0)
            images = images.clamp_(0.0, 1.0)
        return TF.normalize(images, self.mean, self.std)


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
            return _pil_to_chw(img, f"image file {path!r}")
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

    def batch(self, indices, preprocess: Preprocessor, device=None) -> torch.Tensor:
        """Preprocessed images ``(len(indices), 3, S, S)``, float32.

        Parameters
        ----------
        indices : array-like of int
        preprocess : Preprocessor
        device : torch.device or None, default=None
            Array inputs are moved there as raw pixels (uint8 stays uint8) and
            preprocessed there, so a GPU does the resizing; None or CPU: on the CPU.
            Other inputs are always preprocessed on the CPU.
        """
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
        pixel bytes, dtype and shape; files by real path, size, modification time,
        change time, inode and device (see :func:`skpeal.cache.file_key`). Equal digests
        mean equal inputs to the preprocessing.

        Returns
        -------
        digests : list of bytes
        """
        if self._fingerprints is None:
            if self.kind == "array":
                self._fingerprints = _row_digests(self._data)
            else:
                self._fingerprints = [_item_digest(x) for x in self._data]
        return self._fingerprints


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.digest()


def _numpy_bytes(t: torch.Tensor) -> np.ndarray:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy()


def _row_digests(data: torch.Tensor, chunk: int = 256) -> list[bytes]:
    head = f"array|{data.dtype}|{tuple(data.shape[1:])}|".encode()
    out = []
    for start in range(0, data.shape[0], chunk):
        block = data[start : start + chunk]
        rows = _numpy_bytes(block).reshape(block.shape[0], -1)
        out.extend(_digest(head, memoryview(r)) for r in rows)
    return out


def _item_digest(item) -> bytes:
    from .cache import file_key

    if isinstance(item, Image.Image):
        return _digest(f"pil|{item.mode}|{item.size}|".encode(), item.tobytes())
    if isinstance(item, np.ndarray):
        a = np.ascontiguousarray(item)
        return _digest(f"ndarray|{a.dtype.str}|{a.shape}|".encode(), memoryview(a).cast("B"))
    return _digest(f"file|{file_key(item)!r}".encode())


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


def random_resized_crop_flip(
    images: torch.Tensor,
    generator,
    scale=(0.5, 1.0),
    ratio=(3 / 4, 4 / 3),
) -> torch.Tensor:
    """Random resized crop back to the input size, and a random horizontal flip.

    Randomness comes only from ``generator``; each image gets its own crop.

    Parameters
    ----------
    images : torch.Tensor of shape (b, 3, S, S)
    generator : torch.Generator or sequence of torch.Generator
        One generator for the batch, or one per image (then image ``k``'s crop and flip
        depend on ``generator[k]`` alone, whatever batch it is in).
    scale : tuple of float, default=(0.5, 1.0)
        Range of the crop's area as a fraction of the image.
    ratio : tuple of float, default=(3/4, 4/3)
        Range of the crop's aspect ratio.
    """
    b, _, h, w = images.shape
    if isinstance(generator, torch.Generator):
        u = torch.rand(b, 4, generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5
    else:
        if len(generator) != b:
            raise ValueError(f"{len(generator)} generators for {b} images")
        draws = torch.zeros(0, 5)
        if b:
            draws = torch.stack([torch.rand(5, generator=g) for g in generator])
        u, flip = draws[:, :4], draws[:, 4] < 0.5
    out = torch.empty_like(images)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for k in range(b):
        area = h * w * (scale[0] + (scale[1] - scale[0]) * float(u[k, 0]))
        ar = math.exp(log_r[0] + (log_r[1] - log_r[0]) * float(u[k, 1]))
        cw = min(w, max(1, round(math.sqrt(area * ar))))
        ch = min(h, max(1, round(math.sqrt(area / ar))))
        top = int(float(u[k, 2]) * (h - ch + 1))
        left = int(float(u[k, 3]) * (w - cw + 1))
        crop = images[k : k + 1, :, top : top + ch, left : left + cw]
        out[k : k + 1] = TF.resize(crop, [h, w], InterpolationMode.BILINEAR, antialias=True)
    flip = flip.to(images.device)
    out[flip] = out[flip].flip(-1)
    return out
