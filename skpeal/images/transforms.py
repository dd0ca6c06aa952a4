"""Image transforms: the backbone's preprocessing and the seeded augmentation crop."""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

__all__ = ["Preprocessor", "random_resized_crop_flip"]


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


# Kept by hand rather than torchvision's RandomResizedCrop: that one draws from torch's
# global RNG, and a view's crop must depend on its own generator alone (cacheable views).
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
