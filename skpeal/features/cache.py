"""The process-wide, byte-bounded cache of frozen image-tower features.

With a frozen image tower (prompt tuning, or LoRA on the text tower only) an image's
features depend only on the image, the image tower and the preprocessing, never on the
adapter. :class:`~skpeal.CLIPAdapterClassifier` therefore encodes each image once and keeps
its features here, shared by every estimator of the process: across epochs, ``fit`` calls,
``predict_proba`` / ``embed`` calls and active-learning rounds, also when the estimator is
re-created by :func:`sklearn.base.clone` or changed by ``set_params`` every round.

Keys. An entry is found under a *space* and an *item* key:

* the space identifies the features' producer: the backbone description (``model``,
  ``pretrained``; a local file by path, size and modification time), a digest of every
  weight, buffer and of the layer structure of the image tower, the preprocessing
  (input size, mean, std, interpolation, resize mode), the device type and the autocast
  precision;
* the item key identifies the image: a BLAKE2 digest of the pixel bytes, dtype and shape of
  an array row, tensor row or in-memory image, or, for a file path, of its real path,
  size, modification time (ns), inode and device. An augmented view adds its view index.

A changed pixel, a changed file, other weights, another backbone or other preprocessing
therefore give other keys: a stale entry can never be returned. (A file rewritten with the
same size within the file system's timestamp resolution is the one case a path key cannot
see; pass arrays when that can happen.)

Budget. The cache holds float32 tensors on the CPU, at most ``max_bytes`` of them
(default 1 GiB, or ``$SKPEAL_FEATURE_CACHE_MB`` megabytes; 0 disables storing). When it is
full, the spaces used least recently (other backbones, other preprocessing) are dropped
first; features of the space in use are never evicted by features of the same space, new
ones are simply not stored. That keeps a pool larger than the budget at a steady hit rate
instead of thrashing. Set ``feature_cache=False`` on the estimator to bypass the cache
(every image is then encoded whenever it is needed, as reference implementations do).

Examples are in :mod:`skpeal.features`, the public home of these names.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import torch

__all__ = ["FeatureCache", "clear_feature_cache", "get_feature_cache"]

#: Default budget of the process-wide cache, in MiB (``$SKPEAL_FEATURE_CACHE_MB`` overrides).
DEFAULT_BUDGET_MB = 1024
#: Bytes counted per entry on top of its tensor data (key, tensor object, dict slot).
ENTRY_OVERHEAD = 256
#: Rows of the first storage block of a space (later blocks double).
BLOCK_MIN_ROWS = 256
#: Largest storage block, in bytes (above glibc's 32 MiB ``mmap`` ceiling, so big blocks
#: live outside the heap).
BLOCK_MAX_BYTES = 48 * 2**20


class _Blocks:
    """Append-only storage of equally shaped rows in a few large tensors."""

    def __init__(self):
        self.current: torch.Tensor | None = None
        self.fill = 0
        self.rows_allocated = 0

    def append(self, row: torch.Tensor, max_rows: int) -> torch.Tensor | None:
        """Copy ``row`` into the newest block (a new one if needed); its view, or None
        when a new block is needed but ``max_rows < 1``."""
        cur = self.current
        if cur is None or self.fill == len(cur):
            row_bytes = max(1, row.element_size() * row.numel())
            want = max(BLOCK_MIN_ROWS, self.rows_allocated)  # doubling
            want = min(want, max(1, BLOCK_MAX_BYTES // row_bytes), max_rows)
            if want < 1:
                return None
            cur = self.current = torch.empty((want, *row.shape), dtype=row.dtype)
            self.fill = 0
            self.rows_allocated += want
        out = cur[self.fill]
        out.copy_(row)
        self.fill += 1
        return out


class FeatureCache:
    """A byte-bounded store of feature rows, grouped in spaces.

    Parameters
    ----------
    max_bytes : int or None, default=None
        Budget in bytes, entries' tensor data plus :data:`ENTRY_OVERHEAD` per entry.
        None: ``$SKPEAL_FEATURE_CACHE_MB`` MiB if set, else :data:`DEFAULT_BUDGET_MB` MiB.
        0 stores nothing.

    Notes
    -----
    Thread-safe. Rows are *copied* into large contiguous blocks (per space and row shape;
    :data:`BLOCK_MIN_ROWS` rows, doubling up to :data:`BLOCK_MAX_BYTES`), and returned as
    views of them: treat them as read-only. Keeping many small tensors alive between the
    transient tensors of a model's forward passes fragments the heap (measured: 50,000
    cached rows of 5 KB, stored as views of their 16-row batches, raised the process's
    peak memory by 830 MB, three times their size). ``nbytes`` counts the stored rows;
    the unfilled rest of each space's newest block is reserved on top (a block is never
    made larger than the rows the budget still allows).
    """

    def __init__(self, max_bytes: int | None = None):
        self._lock = threading.RLock()
        self._spaces: OrderedDict[Hashable, dict[bytes, torch.Tensor]] = OrderedDict()
        self._space_bytes: dict[Hashable, int] = {}
        self._blocks: dict[Hashable, dict[tuple, _Blocks]] = {}
        self._nbytes = 0
        self._stats = dict(hits=0, misses=0, stores=0, evictions=0)
        self._max_bytes = 0
        self.max_bytes = _default_budget() if max_bytes is None else max_bytes

    # -- budget ---------------------------------------------------------------------
    @property
    def max_bytes(self) -> int:
        """Budget in bytes; lowering it evicts least recently used spaces, then entries."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, got {value!r}")
        with self._lock:
            self._max_bytes = value
            self._shrink(keep=None)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored entries (row data plus per-entry overhead)."""
        return self._nbytes

    def __len__(self) -> int:
        with self._lock:
            return sum(len(d) for d in self._spaces.values())

    # -- access -----------------------------------------------------------------------
    def get_many(self, space: Hashable, keys: Sequence[bytes]) -> list[torch.Tensor | None]:
        """The stored rows of ``keys`` in ``space`` (None where absent); counts hits/misses.

        Parameters
        ----------
        space : hashable
            The producer of the features (see :mod:`skpeal.features`).
        keys : sequence of bytes
            Item keys (image fingerprints).

        Returns
        -------
        rows : list of torch.Tensor or None
            One entry per key.
        """
        with self._lock:
            d = self._spaces.get(space)
            if d is None:
                self._stats["misses"] += len(keys)
                return [None] * len(keys)
            self._spaces.move_to_end(space)
            out = [d.get(k) for k in keys]
            hits = sum(r is not None for r in out)
            self._stats["hits"] += hits
            self._stats["misses"] += len(keys) - hits
            return out

    def put_many(self, space: Hashable, keys: Sequence[bytes], rows) -> int:
        """Store ``rows[i]`` under ``keys[i]`` in ``space`` while the budget allows.

        Other spaces are evicted (least recently used first) to make room; entries of
        ``space`` itself are never evicted for it.

        Parameters
        ----------
        space : hashable
            The producer of the features (see :mod:`skpeal.features`).
        keys : sequence of bytes
            Item keys (image fingerprints).
        rows : torch.Tensor of shape (len(keys), ...) or sequence of torch.Tensor
            The feature rows, copied into the cache.

        Returns
        -------
        n_stored : int
            Number of new entries stored.
        """
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys but {len(rows)} rows")
        with self._lock:
            if self._max_bytes == 0:
                return 0
            d = self._spaces.get(space)
            if d is None:
                d = self._spaces[space] = {}
                self._space_bytes[space] = 0
            self._spaces.move_to_end(space)
            blocks = self._blocks.setdefault(space, {})
            stored = 0
            for k, row in zip(keys, rows):
                if k in d:
                    continue
                size = row.element_size() * row.numel() + ENTRY_OVERHEAD
                if self._nbytes + size > self._max_bytes:
                    self._shrink(keep=space, need=size)
                    if self._nbytes + size > self._max_bytes:
                        break  # only this space is left and it is full: store no more
                row = row.detach()
                store = blocks.get((tuple(row.shape), row.dtype))
                if store is None:
                    store = blocks[(tuple(row.shape), row.dtype)] = _Blocks()
                # never reserve more rows than the budget still allows
                view = store.append(row, (self._max_bytes - self._nbytes) // size)
                if view is None:  # pragma: no cover - the budget check above leaves room
                    break
                d[k] = view
                self._nbytes += size
                self._space_bytes[space] += size
                stored += 1
            if not d:
                del self._spaces[space], self._space_bytes[space], self._blocks[space]
            self._stats["stores"] += stored
            return stored

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._spaces.clear()
            self._space_bytes.clear()
            self._blocks.clear()
            self._nbytes = 0
            self._stats = dict(hits=0, misses=0, stores=0, evictions=0)

    def stats(self) -> dict:
        """Counters and sizes.

        Returns
        -------
        stats : dict
            ``hits`` and ``misses`` (rows looked up), ``stores`` (rows stored),
            ``evictions`` (rows dropped for room), ``entries``, ``spaces``, ``nbytes``,
            ``max_bytes``.
        """
        with self._lock:
            return dict(
                self._stats,
                entries=len(self),
                spaces=len(self._spaces),
                nbytes=self._nbytes,
                max_bytes=self._max_bytes,
            )

    # -- eviction -------------------------------------------------------------------
    def _shrink(self, keep, need: int = 0) -> None:
        """Drop least recently used spaces other than ``keep`` until ``need`` more bytes fit."""
        for space in list(self._spaces):
            if self._nbytes + need <= self._max_bytes:
                return
            if space != keep:
                self._drop_space(space)

    def _drop_space(self, space) -> None:
        d = self._spaces.pop(space)
        self._blocks.pop(space, None)
        self._nbytes -= self._space_bytes.pop(space)
        self._stats["evictions"] += len(d)


def _default_budget() -> int:
    env = os.environ.get("SKPEAL_FEATURE_CACHE_MB", "").strip()
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise ValueError(
                f"SKPEAL_FEATURE_CACHE_MB must be a number of megabytes, got {env!r}"
            ) from None
        if mb < 0:
            raise ValueError(f"SKPEAL_FEATURE_CACHE_MB must be >= 0, got {env!r}")
        return int(mb * 2**20)
    return DEFAULT_BUDGET_MB * 2**20


_CACHE: FeatureCache | None = None
_CACHE_LOCK = threading.Lock()


def get_feature_cache() -> FeatureCache:
    """The process-wide cache that estimators with ``feature_cache=True`` use.

    Returns
    -------
    cache : FeatureCache
        Created on first use with the default budget; set its ``max_bytes`` to change it.
    """
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = FeatureCache()
        return _CACHE


def clear_feature_cache() -> None:
    """Empty the process-wide cache (frees its memory; counters restart at 0)."""
    get_feature_cache().clear()
