"""Image features of an adapted model: batched, streamed from files, cached when frozen.

:class:`ImageEncoder` turns an ``ImageSource`` (:mod:`skpeal.images`) into L2-normalised image
features, block by block, without ever holding more than a few batches of decoded images:
array inputs are sliced batch by batch (and preprocessed on the GPU when the model is
there), file inputs are decoded by a :class:`torch.utils.data.DataLoader` with worker
processes. With a frozen image tower it reads and fills the process-wide
:mod:`skpeal.features` cache, so each image is encoded once per process.

Augmented views. With ``augment=True`` and a frozen tower, image ``i`` has a fixed set of
views ``0..V-1``; view ``v`` is a random resized crop and flip drawn from a generator
seeded by the image's content digest and ``v`` (nothing else), so a view is the same in
every fit, every round and every process, and its features can be cached.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from .._runtime import (
    TRIM_EVERY_IMAGES,
    autocast,
    release_free_memory,
    resolve_workers,
    to_device,
)
from ..images import ImageSource, iter_batches
from .cache import FeatureCache
from .keys import view_keys, view_seeds

__all__ = ["ImageEncoder"]


def _generators(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]



class _Items(torch.utils.data.Dataset):
    """Images ``idx`` of an item source (paths, PIL, arrays), one preprocessed tensor each."""

    def __init__(self, source: ImageSource, idx, preprocess, seeds, scale):
        self.source, self.idx, self.preprocess, self.seeds = source, idx, preprocess, seeds
        self.scale = scale

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, k):
        gens = None if self.seeds is None else _generators([self.seeds[k]])
        return self.source.batch([self.idx[k]], self.preprocess, augment=gens,
                                 scale=self.scale)[0]


class ImageEncoder:
    """Normalised image features of a module, read in batches, optionally cached.

    Parameters
    ----------
    module : skpeal.nn.AdaptedCLIP
    preprocess : Preprocessor
    device : torch.device
    dtype : torch.dtype or None
        Autocast dtype (None: fp32).
    batch_size : int
    num_workers : int or None, default=None
        DataLoader workers for file inputs; None: see ``skpeal._runtime.resolve_workers``.
    cache : FeatureCache or None, default=None
        Where features are looked up and stored; None encodes every image every time.
        Only pass a cache for a frozen image tower.
    space : hashable or None, default=None
        The cache space (see ``skpeal.features.keys.feature_space``); required with ``cache``.
    view_scale : tuple of float, default=(0.5, 1.0)
        Area range of the random resized crops of augmented views.

    Attributes
    ----------
    n_encoded : int
        Images (or views) encoded by this encoder so far (cache misses).
    """

    def __init__(
        self,
        module,
        preprocess,
        *,
        device,
        dtype,
        batch_size,
        num_workers=None,
        cache: FeatureCache | None = None,
        space=None,
        view_scale=(0.5, 1.0),
    ):
        if cache is not None and space is None:
            raise ValueError("a cache needs a space")
        self.module = module
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.cache = cache
        self.space = space
        self.view_scale = tuple(view_scale)
        self.n_encoded = 0

    def features(self, source: ImageSource, views=None) -> torch.Tensor:
        """All features ``(len(source), d)``, float32 on the CPU (see :meth:`iter_features`)."""
        return torch.cat(list(self.iter_features(source, views)))

    # The cache copies stored rows into its own large blocks, so a batch is freed as soon
    # as it has been yielded.
    def iter_features(self, source: ImageSource, views=None, block: int | None = None):
        """Features of every image of ``source`` in order, in blocks of ``block`` rows.

        Parameters
        ----------
        source : ImageSource
        views : array-like of int or None, default=None
            Augmented view of each image (see the module docstring); None: the plain
            images.
        block : int or None, default=None
            Rows per yielded block; None: ``batch_size``.

        Yields
        ------
        features : torch.Tensor of shape (b, d)
            float32, CPU, L2-normalised.
        """
        n = len(source)
        block = block or self.batch_size
        keys = seeds = None
        if views is not None:
            views = np.asarray(views, dtype=np.int64)
            if views.shape != (n,):
                raise ValueError(f"views must have shape ({n},), got {views.shape}")
            keys = view_keys(source.fingerprints(), views, self.view_scale)
            seeds = view_seeds(keys)
        elif self.cache is not None:
            keys = source.fingerprints()
        hits = [None] * n
        if self.cache is not None:
            hits = self.cache.get_many(self.space, keys)
        miss = np.array([p for p, h in enumerate(hits) if h is None], dtype=np.int64)
        stream = self._encode(source, miss, None if seeds is None else seeds[miss])
        if len(miss) == n:  # nothing cached: pass batches straight through
            done = 0
            for feats in stream:
                if self.cache is not None:
                    self.cache.put_many(self.space, keys[done : done + len(feats)], feats.unbind(0))
                done += len(feats)
                yield feats
            return
        pending: deque = deque()
        done = 0
        rows = []
        for p in range(n):
            row = hits[p]
            if row is None:
                if not pending:
                    feats = next(stream)
                    batch_keys = [keys[i] for i in miss[done : done + len(feats)]]
                    done += len(feats)
                    pending.extend(feats.unbind(0))
                    self.cache.put_many(self.space, batch_keys, list(pending))
                row = pending.popleft()
            rows.append(row)
            if len(rows) == block:
                yield torch.stack(rows)
                rows = []
        if rows:
            yield torch.stack(rows)

    # -- encoding ---------------------------------------------------------------------------
    def _encode(self, source: ImageSource, idx: np.ndarray, seeds):
        """Features of images ``idx`` (views from ``seeds``), batch by batch."""
        if len(idx) == 0:
            return
        self.module.freeze_eval()
        bs = self.batch_size
        workers = resolve_workers(self.num_workers, source, len(idx), bs, self.device)
        if source.kind == "items" and workers > 0:
            loader = torch.utils.data.DataLoader(
                _Items(source, idx, self.preprocess, seeds, self.view_scale),
                batch_size=bs,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
            )
            for x in loader:
                yield self._forward(x)
            return
        for chunk in iter_batches(len(idx), bs):
            gens = None if seeds is None else _generators(seeds[chunk])
            yield self._forward(source.batch(idx[chunk], self.preprocess, device=self.device,
                                             augment=gens, scale=self.view_scale))

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_device(x, self.device)
        with autocast(self.device, self.dtype):
            f = self.module.image_features(x)
        before = self.n_encoded
        self.n_encoded += len(x)
        if self.n_encoded // TRIM_EVERY_IMAGES > before // TRIM_EVERY_IMAGES:
            release_free_memory()  # freed batches must not pile up in the C heap
        return f.float().cpu()
