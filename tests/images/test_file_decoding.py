"""Image files reach the model as a viewer shows them: EXIF orientation applied, 16-bit
formats scaled by their real range (a FIFO with an image name refused, not waited on)."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from skpeal.datasets import load_image_folder
from skpeal.images.input import _load_path


def _gradient(h=24, w=40):
    return (np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    a = np.stack([_gradient()] * 3, -1)
    upright = Image.fromarray(np.rot90(a, k=-turn).copy())  # stored turned, EXIF turns back
    exif = upright.getexif()
    exif[0x0112] = orientation
    upright.save(tmp_path / "r.png", exif=exif)  # lossless, so pixels compare exactly
    plain = Image.fromarray(a)
    plain.save(tmp_path / "p.png")
    got, want = _load_path(str(tmp_path / "r.png")), _load_path(str(tmp_path / "p.png"))
    assert got.shape == want.shape == (1, 3, 24, 40)
    torch.testing.assert_close(got, want)


def test_an_exif_rotated_jpeg_is_upright(tmp_path):
    a = np.zeros((24, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white
    stored = Image.fromarray(np.rot90(a, k=1).copy())  # turned left; orientation 6 turns back
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "r.jpg", exif=exif, quality=95)
    t = _load_path(str(tmp_path / "r.jpg"))
    assert t.shape == (1, 3, 24, 40)
    assert t[0, :, :, :18].mean() > 0.9 and t[0, :, :, 22:].mean() < 0.1


@pytest.mark.parametrize("ext", ["pgm", "png", "tif"])
def test_16_bit_files_decode_like_their_8_bit_originals(tmp_path, ext):
    a8 = _gradient()
    Image.fromarray(a8).save(tmp_path / f"a8.{ext}")
    Image.fromarray(a8.astype(np.uint16) * 257).save(tmp_path / f"a16.{ext}")
    t8 = _load_path(str(tmp_path / f"a8.{ext}"))
    t16 = _load_path(str(tmp_path / f"a16.{ext}"))
    torch.testing.assert_close(t16, t8, atol=1e-6, rtol=0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_named_png_is_refused_without_hanging(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.fromarray(_gradient()).save(tmp_path / c / f"{i}.png")
    os.mkfifo(tmp_path / "a" / "pipe.png")
    with pytest.raises(ValueError, match="pipe.png.*not a regular file"):
        load_image_folder(tmp_path)
