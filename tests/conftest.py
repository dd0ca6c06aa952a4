"""Shared fixtures: offline mode, the tiny model's settings, small image datasets."""

import os

# Any hub download must fail at once here, not after retries (no network on CI).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

#: Keyword arguments for a fast estimator on the tiny random model.
TINY = dict(model="skpeal-tiny", pretrained=None, n_ctx=4, random_state=0)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _digits_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8x8 values in [0, 16] -> 32x32 uint8 grey images
    images = (np.kron(d.images, np.ones((4, 4))) * (255 / 16)).round().astype(np.uint8)
    return images, d.target


@pytest.fixture(scope="session")
def digits():
    """(X_train, y_train, X_test, y_test): 500 + 300 upscaled digits, 32x32 uint8 grey."""
    X, y = _digits_images()
    return X[:500], y[:500], X[500:800], y[500:800]


@pytest.fixture(scope="session")
def small_images():
    """40 random RGB uint8 images (32x32) with string labels of 3 classes."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    y = np.array(["cat", "dog", "bird", "cat"] * 10)
    return X, y
