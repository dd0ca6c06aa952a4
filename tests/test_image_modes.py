"""Every Pillow mode and every array dtype decodes to the model's [0, 1] range by its real range.

8-bit modes as Pillow converts them to RGB; 16-bit modes divided by 65535; the 32-bit
integer mode ``I`` divided by 2**31 - 1 (negative values refused); the float mode ``F``
taken as [0, 1] (values outside refused). Arrays: unsigned integers by their bit depth,
signed integers as 8-bit values in [0, 255], floats in [0, 1], booleans refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from skpeal import CLIPAdapterClassifier
from skpeal.images import check_images
from tests.conftest import TINY


def _decode(X):
    """Decoded images (n, 3, H, W) in [0, 1], before any resizing or normalisation."""
    src = check_images(X)
    return src.batch(np.arange(len(src)), lambda t: t).numpy()


G = np.arange(16, dtype=np.uint8).reshape(4, 4) * 17  # 0, 17, ..., 255
RGB = np.stack([G, G[::-1], G.T], axis=-1)


def _grey(v):
    return np.repeat(np.asarray(v, dtype=np.float64)[None], 3, axis=0)


def _rgb(a):
    return np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)


def _pil_rgb(im):
    return _rgb(np.asarray(im.convert("RGB"))) / 255.0


U16 = (G.astype(np.uint16) * 257)  # the 8-bit values at 16-bit depth: same [0, 1] values
I32 = np.array([[0, 1, 2**20, 2**31 - 1]] * 4, dtype=np.int32)
F32 = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)


def _palette():
    im = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return im


# (id, PIL image, expected (3, H, W) in [0, 1]; None: as Pillow converts it to RGB)
PIL_CASES = [
    ("1", Image.fromarray(G > 127), _grey(G > 127)),
    ("L", Image.fromarray(G), _grey(G / 255)),
    ("LA", Image.fromarray(np.stack([G, G[::-1]], -1), mode="LA"), _grey(G / 255)),
    ("P", _palette(), None),
    ("PA", _palette().convert("PA"), None),
    ("RGB", Image.fromarray(RGB), _rgb(RGB / 255)),
    ("RGBA", Image.fromarray(np.concatenate([RGB, G[..., None]], -1)), _rgb(RGB / 255)),
    ("RGBX", Image.fromarray(RGB).convert("RGBX"), _rgb(RGB / 255)),
    ("CMYK", Image.fromarray(RGB).convert("CMYK"), None),
    ("YCbCr", Image.fromarray(RGB).convert("YCbCr"), None),
    ("HSV", Image.fromarray(RGB).convert("HSV"), None),
    ("I;16", Image.fromarray(U16), _grey(G / 255)),
    ("I;16B", Image.fromarray(U16.astype(">u2")), _grey(G / 255)),
    ("I", Image.fromarray(I32), _grey(I32 / (2**31 - 1))),
    ("F", Image.fromarray(F32), _grey(F32)),
]


@pytest.mark.parametrize(
    "im, expected",
    [pytest.param(im, exp, id=i) for i, im, exp in PIL_CASES],
)
def test_pil_mode_decodes_to_expected_pixels(im, expected):
    if expected is None:  # 8-bit colour modes: exactly as Pillow converts them to RGB
        expected = _pil_rgb(im)
    out = _decode([im])
    assert out.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def _save(tmp_path, im, ext):
    p = tmp_path / f"img.{ext}"
    im.save(p)
    return str(p)


FILE_CASES = [
    ("L.png", Image.fromarray(G), "png", _grey(G / 255)),
    ("1.png", Image.fromarray(G > 127), "png", _grey(G > 127)),
    ("LA.png", Image.fromarray(np.stack([G, G], -1), mode="LA"), "png", _grey(G / 255)),
    ("P.png", _palette(), "png", None),
    ("RGBA.png", Image.fromarray(np.concatenate([RGB, G[..., None]], -1)), "png",
     _rgb(RGB / 255)),
    ("I;16.png", Image.fromarray(U16), "png", _grey(G / 255)),
    ("I;16.tif", Image.fromarray(U16), "tif", _grey(G / 255)),
    ("I;16B.tif", Image.fromarray(U16.astype(">u2")), "tif", _grey(G / 255)),
    ("I.tif", Image.fromarray(I32), "tif", _grey(I32 / (2**31 - 1))),
    ("F.tif", Image.fromarray(F32), "tif", _grey(F32)),
    ("CMYK.tif", Image.fromarray(RGB).convert("CMYK"), "tif", None),
]


@pytest.mark.parametrize(
    "im, ext, expected",
    [pytest.param(im, e, exp, id=i) for i, im, e, exp in FILE_CASES],
)
def test_image_file_decodes_to_expected_pixels(tmp_path, im, ext, expected):
    path = _save(tmp_path, im, ext)
    if expected is None:
        with Image.open(path) as f:
            expected = _pil_rgb(f)
    np.testing.assert_allclose(_decode([path])[0], expected, atol=1e-6)


# (dtype, values, expected [0, 1] values)
DTYPE_CASES = [
    ("uint8", G, G / 255),
    ("uint16", U16, G / 255),
    ("uint32", G.astype(np.uint32) * 16843009, G / 255),
    ("uint64", G.astype(np.uint64) * np.uint64(72340172838076673), G / 255),
    ("int8", (G // 2).astype(np.int8), (G // 2) / 255),
    ("int16", G.astype(np.int16), G / 255),
    ("int32", G.astype(np.int32), G / 255),
    ("int64", G.astype(np.int64), G / 255),
    ("float16", (G / 255).astype(np.float16), (G / 255).astype(np.float16)),
    ("float32", (G / 255).astype(np.float32), (G / 255).astype(np.float32)),
    ("float64", G / 255, G / 255),
]


@pytest.mark.parametrize("form", ["stacked", "list"])
@pytest.mark.parametrize(
    "a, expected",
    [pytest.param(a, e, id=d) for d, a, e in DTYPE_CASES],
)
def test_array_dtype_decodes_by_its_real_range(a, expected, form):
    X = a[None] if form == "stacked" else [a]
    np.testing.assert_allclose(_decode(X)[0], _grey(expected), atol=1e-6)


@pytest.mark.parametrize(
    "dtype, scale",
    [(torch.uint8, 1), (torch.int16, 1), (torch.int64, 1), (torch.float32, None),
     (torch.uint16, 257)],
)
def test_tensor_dtype_decodes_by_its_real_range(dtype, scale):
    base = torch.from_numpy(G.astype(np.int64))
    t = (base.float() / 255).to(dtype) if scale is None else (base * scale).to(dtype)
    np.testing.assert_allclose(_decode(t[None, None])[0], _grey(G / 255), atol=1e-6)


@pytest.mark.parametrize(
    "X, exc, match",
    [
        (np.zeros((1, 4, 4), dtype=bool), TypeError, "boolean"),
        (np.full((1, 4, 4), 1.5, np.float32), ValueError, r"\[0, 1\]"),
        (np.full((1, 4, 4), 256, np.int32), ValueError, r"\[0, 255\]"),
        pytest.param([Image.fromarray(np.full((4, 4), 1.5, np.float32))], ValueError,
                     r"\[0, 1\]"),
        pytest.param([Image.fromarray(np.full((4, 4), -1, np.int32))], ValueError, "negative"),
        pytest.param([Image.fromarray(np.full((4, 4), np.nan, np.float32))], ValueError, "NaN"),
        pytest.param(np.zeros((1, 0, 4), np.uint8), ValueError, "empty image"),
    ],
)
def test_values_outside_the_range_are_refused(X, exc, match):
    with pytest.raises(exc, match=match):
        _decode(X)


@pytest.fixture(scope="module")
def grey_model():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 32, 32), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 8)
    return CLIPAdapterClassifier(**TINY, max_epochs=2, lr=0.05).fit(X, y), X


def test_16_bit_png_predicts_the_same_as_its_8_bit_version(grey_model, tmp_path):
    est, X = grey_model
    p8, p16, tif = [], [], []
    for i, a in enumerate(X[:6]):
        Image.fromarray(a).save(tmp_path / f"{i}_8.png")
        Image.fromarray(a.astype(np.uint16) * 257).save(tmp_path / f"{i}_16.png")
        Image.fromarray(a.astype(np.float32) / 255).save(tmp_path / f"{i}_f.tif")
        p8.append(str(tmp_path / f"{i}_8.png"))
        p16.append(str(tmp_path / f"{i}_16.png"))
        tif.append(str(tmp_path / f"{i}_f.tif"))
    with Image.open(p16[0]) as im:
        assert im.mode == "I;16"  # really a 16-bit file
    ref = est.predict_proba(p8)
    np.testing.assert_allclose(est.predict_proba(p16), ref, atol=1e-6)
    np.testing.assert_allclose(est.predict_proba(tif), ref, atol=1e-5)
    np.testing.assert_array_equal(est.predict(p16), est.predict(p8))


def test_uint16_array_predicts_the_same_as_its_uint8_version(grey_model):
    est, X = grey_model
    np.testing.assert_allclose(est.predict_proba(X[:6].astype(np.uint16) * 257),
                               est.predict_proba(X[:6]), atol=1e-6)
