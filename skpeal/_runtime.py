"""Where and how the model runs: device, autocast, batch sizes, workers, memory trim.

The policies the estimator and the image encoder share: which device ``device="auto"``
means, the autocast dtype of a ``precision`` setting, the inference batch size of
``predict_batch_size="auto"``, how many DataLoader workers decode files, and giving the C
allocator's free memory back to the system during long passes.

Allocator trim. PyTorch allocates CPU tensors with ``malloc``. In a long pass of the
model over a pool, glibc keeps much of what each batch frees inside its heaps (one per
allocating thread) instead of returning it, and the pages that freed memory occupies stay
resident: measured while scoring 20,000 image files, the memory in use by live objects did
not change while free-but-held memory grew by 66-190 MB (varying between runs), and that
was the whole growth of the process. ``malloc_trim(0)`` returns such free pages to the
system without touching live memory (the remedy dask's documentation gives for
"unmanaged" worker memory). It exists only in glibc; elsewhere :func:`release_free_memory`
does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

import torch

from ._validation import InvalidParameterError

__all__ = [
    "CPU_BATCH_PIXELS",
    "TRIM_EVERY_IMAGES",
    "auto_batch_size",
    "autocast",
    "autocast_dtype",
    "cuda_devices",
    "loadable_device",
    "release_free_memory",
    "resolve_device",
    "resolve_workers",
    "to_device",
]

#: Images between two :func:`release_free_memory` calls in a pass of the image encoder.
TRIM_EVERY_IMAGES = 2048

_TRIM = None  # the resolved malloc_trim, or False where there is none


def _malloc_trim():
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                fn = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):  # pragma: no cover - not glibc after all
                pass
            else:
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _TRIM = fn
    return _TRIM


def release_free_memory() -> bool:
    """Return the C heap's free pages to the operating system (glibc's ``malloc_trim``).

    Returns
    -------
    released : bool
        True when glibc reported that memory was returned; False when nothing was, or
        where ``malloc_trim`` does not exist (not glibc).
    """
    fn = _malloc_trim()
    return bool(fn(0)) if fn else False


# ------------------------------------------------------------------------------ devices
def resolve_device(device) -> torch.device:
    """The torch device of a ``device`` parameter (``"auto"``, ``"cpu"``, ``"cuda[:N]"``)."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bad = InvalidParameterError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not isinstance(device, str):
        raise bad
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise bad from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(
                f"device={device!r} but CUDA is not available here; use 'auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidParameterError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA devices"
            )
    elif dev.type != "cpu":
        raise bad
    return dev


def loadable_device(saved) -> torch.device:
    """The saved device when it exists here, else the CPU (a GPU pickle loads anywhere)."""
    dev = torch.device(saved)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return dev


def cuda_devices(device: torch.device) -> list[int]:
    """The CUDA device indices whose random state a fit on ``device`` touches."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def autocast_dtype(device: torch.device, precision: str):
    """The autocast dtype for a device and a ``precision`` setting (None: fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype):
    """``torch.autocast`` for ``dtype``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device``: through pinned memory, non-blocking, on CUDA."""
    if device.type == "cuda" and t.device.type == "cpu":
        if not t.is_pinned():
            t = t.pin_memory()
        return t.to(device, non_blocking=True)
    return t.to(device)


# ------------------------------------------------------------------------ batch and workers
#: Pixels per inference batch on the CPU with ``predict_batch_size="auto"`` (16 images at
#: 112 px, 4 at 224 px).
CPU_BATCH_PIXELS = 16 * 112 * 112


def auto_batch_size(device, image_size: int) -> int:
    """The inference batch size of ``predict_batch_size="auto"``.

    On CUDA 256 images. On the CPU about ``CPU_BATCH_PIXELS`` pixels (16 images of 112 px,
    4 of 224 px, at least 1): a CPU gains nothing from large batches, and a batch's
    intermediate tensors must stay small for the memory allocator to reuse them. glibc
    serves blocks above 32 MiB from fresh ``mmap`` pages and returns them at once, so a
    large batch page-faults and zeroes its activations anew every time: measured on
    EfficientNet-Lite0 at 112 px (2 cores, 2,000 images), a batch of 256 ran at 120-160
    images/s with about half its CPU time in the kernel, a batch of 16 at 290-380 images/s.
    """
    if torch.device(device).type == "cuda":
        return 256
    return max(1, min(256, CPU_BATCH_PIXELS // (int(image_size) ** 2)))


def resolve_workers(num_workers, source, n_images: int, batch_size: int, device=None) -> int:
    """Worker processes for reading ``n_images`` of ``source``: 0 unless files are decoded.

    Automatic (``num_workers=None``): workers only use cores that the model's own compute
    leaves free: on the CPU that is the cores beyond torch's intra-op threads (on a 2-core
    machine none: a decoding worker there would stall the model's threads at every
    operation), on a GPU every core but one; at most 4.
    """
    if num_workers is not None:
        return int(num_workers)
    if not source.reads_files or n_images <= 2 * batch_size:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    busy = (
        1 if device is not None and torch.device(device).type == "cuda" else torch.get_num_threads()
    )
    return max(0, min(4, cores - busy))
