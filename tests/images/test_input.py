import numpy as np
import pytest
import torch
from PIL import Image

from skpeal.images import Preprocessor, check_images, random_resized_crop_flip

PRE = Preprocessor(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _all(source, pre=PRE):
    return source.batch(np.arange(len(source)), pre)


def test_uint8_array_pil_and_path_inputs_agree(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 40, 48, 3), dtype=np.uint8)
    paths = []
    for i, a in enumerate(imgs):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(a).save(p)
        paths.append(str(p))
    pil = [Image.fromarray(a) for a in imgs]
    nchw = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    ref = _all(check_images(imgs))
    assert ref.shape == (3, 3, 32, 32)
    for other in (pil, paths, np.array(paths, dtype=object), np.array(paths), nchw, list(imgs)):
        assert torch.allclose(_all(check_images(other)), ref, atol=1e-5)
    # floats in [0, 1] give the same as uint8 / 255
    assert torch.allclose(_all(check_images(imgs / 255.0)), ref, atol=1e-5)


def test_grey_becomes_three_channels_and_alpha_is_dropped():
    grey = np.full((2, 32, 32), 255, dtype=np.uint8)
    out = _all(check_images(grey))
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, torch.ones_like(out))
    rgba = np.zeros((2, 32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert torch.allclose(_all(check_images(rgba)), -torch.ones(2, 3, 32, 32))
    assert _all(check_images(grey[..., None])).shape == (2, 3, 32, 32)


def test_resize_shortest_side_then_centre_crop():
    a = np.zeros((1, 32, 64), dtype=np.uint8)
    a[:, :, 12:52] = 255  # the centre 40 columns are white: the crop keeps 32
    out = _all(check_images(a), Preprocessor(16, (0,) * 3, (1,) * 3))
    assert out.shape == (1, 3, 16, 16)
    assert float(out.min()) > 0.99


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((0, 8, 8), dtype=np.uint8), "empty"),
        (np.zeros((8, 8), dtype=np.uint8), "shape"),
        (np.zeros((2, 8, 8, 3, 1), dtype=np.uint8), "shape"),
        (np.zeros((2, 8, 8, 5), dtype=np.uint8), "channels"),
        (np.full((2, 8, 8), np.nan), "NaN"),
        (np.full((2, 8, 8), 3.0), r"\[0, 1\]"),
        (np.full((2, 8, 8), -1, dtype=np.int64), r"\[0, 255\]"),
        (torch.zeros(2, 8, 8, 8, 8), "shape"),
        ([], "empty"),
        (["/no/such/file.png"], "does not exist"),
    ],
)
def test_bad_input_value_errors(X, match):
    with pytest.raises(ValueError, match=match):
        check_images(X)


@pytest.mark.parametrize("X", ["a.png", 3, [object()], np.zeros((2, 8, 8), dtype=bool)])
def test_bad_input_type_errors(X):
    with pytest.raises(TypeError):
        check_images(X)


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    source = check_images([str(bad)])
    with pytest.raises(ValueError, match="broken.png"):
        _all(source)


def test_random_resized_crop_flip_is_seeded_and_keeps_shape():
    x = torch.rand(4, 3, 32, 32)
    a = random_resized_crop_flip(x, torch.Generator().manual_seed(1))
    b = random_resized_crop_flip(x, torch.Generator().manual_seed(1))
    c = random_resized_crop_flip(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
