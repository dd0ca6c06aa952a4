"""Tests of skpeal.datasets: shapes, labels, subsampling, the folder loader's checks."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from skpeal import datasets
from skpeal.datasets import (
    FASHION_MNIST_CLASSNAMES,
    load_digits_images,
    load_fashion_mnist,
    load_image_folder,
)

KEYS = {"X_train", "y_train", "X_test", "y_test", "classnames", "DESCR"}


def _fmnist_available():
    try:
        datasets._locate_fashion_mnist(None)
    except FileNotFoundError:
        return False
    return True


needs_fmnist = pytest.mark.skipif(
    not _fmnist_available(), reason="Debian package dataset-fashion-mnist not installed"
)


# -- a fake Fashion-MNIST in idx format --------------------------------------------------


def _write_idx(path, array, magic, compress=True):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        Path(path).write_bytes(data)


@pytest.fixture
def fake_fmnist(tmp_path):
    """A 4-file idx folder: 50 train / 20 test random 28x28 images, labels cycling 0..9."""
    rng = np.random.default_rng(0)
    y_tr, y_te = np.arange(50) % 10, np.arange(20) % 10
    X_tr = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    X_te = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", X_tr, 2051)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y_tr, 2049)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", X_te, 2051, compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_te, 2049, compress=False)
    return tmp_path, (X_tr, y_tr, X_te, y_te)


def test_fashion_mnist_from_data_home_reads_the_files_exactly(fake_fmnist):
    folder, (X_tr, y_tr, X_te, y_te) = fake_fmnist
    data = load_fashion_mnist(data_home=folder)
    assert set(data) == KEYS
    np.testing.assert_array_equal(data.X_train, X_tr)
    np.testing.assert_array_equal(data.y_train, y_tr)
    np.testing.assert_array_equal(data.X_test, X_te)
    np.testing.assert_array_equal(data.y_test, y_te)
    assert data.X_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.X_train.flags.writeable
    assert data.classnames == list(FASHION_MNIST_CLASSNAMES)


def test_fashion_mnist_subsample_is_stratified_seeded_and_ordered(fake_fmnist):
    folder, (X_tr, y_tr, _, _) = fake_fmnist
    a = load_fashion_mnist(data_home=folder, n_train=20, n_test=10, random_state=3)
    b = load_fashion_mnist(data_home=folder, n_train=20, n_test=10, random_state=3)
    c = load_fashion_mnist(data_home=folder, n_train=20, n_test=10, random_state=4)
    assert a.X_train.shape == (20, 28, 28) and a.X_test.shape == (10, 28, 28)
    assert np.bincount(a.y_train, minlength=10).tolist() == [2] * 10
    assert np.bincount(a.y_test, minlength=10).tolist() == [1] * 10
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    # every kept image is a training image with its own label
    rows = {x.tobytes(): lab for x, lab in zip(X_tr, y_tr)}
    assert all(rows[x.tobytes()] == lab for x, lab in zip(a.X_train, a.y_train))


@pytest.mark.parametrize("n", [0, -1, 51, 2.5, True, "10"])
def test_fashion_mnist_rejects_bad_n_train(fake_fmnist, n):
    with pytest.raises(ValueError, match="n_train"):
        load_fashion_mnist(data_home=fake_fmnist[0], n_train=n)


def test_fashion_mnist_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_package_folders", lambda: [tmp_path / "nowhere"])
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist()
    with pytest.raises(FileNotFoundError, match="data_home="):
        load_fashion_mnist(data_home=tmp_path)


def test_fashion_mnist_rejects_a_broken_file(fake_fmnist):
    folder, _ = fake_fmnist
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist(data_home=folder)
    path.write_bytes(b"\x00\x00\x08\x01" + bytes(20))
    with pytest.raises(ValueError, match="not an idx file"):
        load_fashion_mnist(data_home=folder)


@needs_fmnist
def test_fashion_mnist_from_the_debian_package():
    data = load_fashion_mnist(n_train=200, n_test=100, random_state=0)
    assert data.X_train.shape == (200, 28, 28) and data.X_test.shape == (100, 28, 28)
    assert np.bincount(data.y_train).tolist() == [20] * 10
    assert "dataset-fashion-mnist" in data.DESCR


@needs_fmnist
def test_fashion_mnist_full_sizes():
    data = load_fashion_mnist()
    assert data.X_train.shape == (60000, 28, 28) and data.X_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_test).tolist() == [1000] * 10


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    frac=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_subsample_property(counts, frac, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n = max(1, int(round(frac * len(y))))
    idx = datasets._subsample(y, n, np.random.RandomState(seed), "n_train")
    assert len(idx) == n and len(np.unique(idx)) == n
    assert np.all(np.diff(idx) > 0)  # sorted, files' order
    # stratified: each class within one of its proportional share
    got = np.bincount(y[idx], minlength=len(counts))
    assert np.all(np.abs(got - np.asarray(counts) * n / len(y)) < 1 + 1e-9)


# -- digits ------------------------------------------------------------------------------


def test_digits_images():
    data = load_digits_images(test_size=0.2, random_state=1)
    assert set(data) == KEYS
    assert data.X_train.dtype == np.uint8 and data.X_train.shape[1:] == (8, 8)
    assert len(data.X_train) + len(data.X_test) == 1797
    assert 0.18 < len(data.X_test) / 1797 < 0.22
    assert data.X_train.max() == 255 and data.X_train.min() == 0
    assert data.classnames[7] == "seven" and len(data.classnames) == 10
    assert set(np.unique(data.y_test)) == set(range(10))
    again = load_digits_images(test_size=0.2, random_state=1)
    np.testing.assert_array_equal(data.y_train, again.y_train)
    np.testing.assert_array_equal(data.X_test, again.X_test)


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.1, "0.2", None])
def test_digits_rejects_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        load_digits_images(test_size=test_size)


# -- image folders -----------------------------------------------------------------------


def _image(path, value=128, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    """root/{cat: 4 images, dog: 3 images (one nested, one upper-case .JPG)} + junk files."""
    root = tmp_path / "photos"
    for i in range(4):
        _image(root / "cat" / f"c{i}.png", 10 * i)
    _image(root / "dog" / "d0.jpg")
    _image(root / "dog" / "D1.JPG", fmt="JPEG")
    _image(root / "dog" / "sub" / "d2.bmp")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"junk")
    (root / "README.md").write_text("ignored: not a folder")
    return root


def test_image_folder_split_per_class(folder):
    data = load_image_folder(folder, test_size=0.5, random_state=0)
    assert set(data) == KEYS
    assert data.classnames == ["cat", "dog"]
    assert data.X_train.dtype == object and isinstance(data.X_train[0], str)
    everything = sorted(data.X_train.tolist() + data.X_test.tolist())
    assert len(everything) == 7 and all(Path(p).is_absolute() for p in everything)
    assert not any(p.endswith((".txt", ".hidden.png")) for p in everything)
    assert any(p.endswith("D1.JPG") for p in everything) and any("sub" in p for p in everything)
    for X, y in ((data.X_train, data.y_train), (data.X_test, data.y_test)):
        for p, lab in zip(X, y):
            assert Path(p).relative_to(folder).parts[0] == data.classnames[lab]
    assert np.bincount(data.y_test).tolist() == [2, 2]  # round(0.5 * 4), round(0.5 * 3)
    again = load_image_folder(folder, test_size=0.5, random_state=0)
    np.testing.assert_array_equal(data.X_test, again.X_test)


def test_image_folder_every_class_keeps_a_training_image(tmp_path):
    _image(tmp_path / "a" / "x.png")
    for i in range(3):
        _image(tmp_path / "b" / f"{i}.png")
    data = load_image_folder(tmp_path, test_size=0.9)
    assert set(data.y_train.tolist()) == {0, 1}
    assert np.bincount(data.y_test, minlength=2).tolist() == [0, 2]


def test_image_folder_with_train_and_test(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for c in ("b_class", "a_class"):
            for i in range(n):
                _image(tmp_path / split / c / f"{i}.png")
    data = load_image_folder(tmp_path)
    assert data.classnames == ["a_class", "b_class"]
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1] and data.y_test.tolist() == [0, 0, 1, 1]
    assert all("/train/" in p for p in data.X_train) and all("/test/" in p for p in data.X_test)


def test_image_folder_names_empty_classes(folder):
    (folder / "empty_one").mkdir()
    (folder / "only_text").mkdir()
    (folder / "only_text" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\['empty_one', 'only_text'\]"):
        load_image_folder(folder)


def test_image_folder_names_unreadable_files(folder):
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "dog" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="2 file") as err:
        load_image_folder(folder)
    assert "broken.png" in str(err.value) and "empty.jpg" in str(err.value)
    # the check can be skipped
    data = load_image_folder(folder, check_images=False)
    assert len(data.X_train) + len(data.X_test) == 9


def test_image_folder_rejects_broken_layouts(tmp_path, folder):
    with pytest.raises(ValueError, match="not a folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    _image(tmp_path / "flat" / "x.png")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path / "flat")
    only_train = tmp_path / "only_train"
    _image(only_train / "train" / "a" / "x.png")
    with pytest.raises(ValueError, match="no test/ folder"):
        load_image_folder(only_train)
    _image(only_train / "test" / "zebra" / "x.png")
    with pytest.raises(ValueError, match="zebra"):
        load_image_folder(only_train)
    with pytest.raises(TypeError, match="path"):
        load_image_folder(3)
    with pytest.raises(ValueError, match="test_size"):
        load_image_folder(folder, test_size=2)


def test_image_folder_paths_feed_pillow(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    data = load_image_folder(copy)
    with Image.open(data.X_train[0]) as im:
        assert im.size == (5, 6)
