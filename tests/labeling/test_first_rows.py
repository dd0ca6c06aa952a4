"""The first batch picked without a model (``init="random"`` and ``init="pixels"``).

:func:`skpeal.labeling._project.first_rows` is the one pick of it, for ``skpeal run``, a
session and a new ``skpeal label`` project made before torch is loaded.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from skpeal._validation import derive_seed
from skpeal.labeling._project import PIXEL_SAMPLE, first_rows, pixel_features


def _colour_images(n_per_colour, seed=0):
    """Images of three colours (noise on top), grouped: rows 0.., then 1.., then 2.."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(3):
        for _ in range(n_per_colour):
            a = rng.integers(0, 60, size=(20, 20, 3), dtype=np.uint8)
            a[..., c] += 180
            out.append(a)
    return out


@settings(max_examples=25, deadline=None)
@given(n_pool=st.integers(1, 40), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_the_pick_is_n_sorted_distinct_remaining_rows_and_the_same_again(n_pool, data, seed):
    images = [np.full((6, 6), v, dtype=np.uint8) for v in range(0, 240, 6)][:n_pool]
    remaining = np.sort(data.draw(st.lists(st.integers(0, n_pool - 1), min_size=1,
                                           unique=True)))
    n = data.draw(st.integers(1, len(remaining)))
    for init in ("random", "pixels"):
        rows = first_rows(init, images, remaining, n, seed)
        assert len(rows) == n == len(set(rows.tolist()))
        assert set(rows.tolist()) <= set(remaining.tolist())
        assert (np.diff(rows) > 0).all()
        assert np.array_equal(rows, first_rows(init, images, remaining, n, seed))


def test_random_is_the_draw_it_always_was():
    remaining = np.arange(3, 90, 2)
    rng = np.random.default_rng(derive_seed("init", 7))
    assert np.array_equal(first_rows("random", None, remaining, 6, 7),
                          np.sort(rng.choice(remaining, size=6, replace=False)))


@pytest.mark.parametrize("seed", range(5))
def test_pixels_cover_the_looks_of_the_pool(seed):
    """Three colours of 40 images: a batch of three has one of each (a random draw of
    three misses a colour about 3 times in 4)."""
    rows = first_rows("pixels", _colour_images(40, seed), np.arange(120), 3, seed)
    assert sorted(rows // 40) == [0, 1, 2]


@pytest.mark.parametrize("seed", range(5))
def test_pixels_cover_the_looks_the_labelled_images_do_not(seed):
    """Labelled images (a batch picked while the model loads, after a first one) are
    clustered too: with two colours labelled, a batch of one is of the third colour (a
    pick that ignored them would be of a labelled colour about 2 times in 3)."""
    images = _colour_images(40, seed)
    labelled = [3, 41]  # a red one and a green one
    remaining = np.setdiff1d(np.arange(120), labelled)
    rows = first_rows("pixels", images, remaining, 1, seed, labelled=labelled)
    assert rows.tolist() and rows[0] // 40 == 2 and rows[0] not in labelled
    # no labelled rows given: the pick of before
    assert np.array_equal(first_rows("pixels", images, remaining, 3, seed, labelled=[]),
                          first_rows("pixels", images, remaining, 3, seed))


def test_pixels_sample_large_pools_and_read_only_the_sample(monkeypatch):
    read = []

    class Pool(list):
        def __getitem__(self, i):
            read.append(i)
            return super().__getitem__(i)

    pool = Pool(_colour_images(400))
    rows = first_rows("pixels", pool, np.arange(1200), 10, 0)
    assert len(set(read)) == PIXEL_SAMPLE and set(rows.tolist()) <= set(read)


def test_files_are_read_up_to_a_byte_budget_and_at_least_four_per_pick(tmp_path,
                                                                       monkeypatch):
    """A 12-megapixel PNG takes about 0.3 s to decode: a thousand of them would hold the
    first batch for minutes."""
    from skpeal.labeling import _project

    paths = []
    for i, a in enumerate(_colour_images(20)):
        paths.append(tmp_path / f"img{i:02d}.png")
        Image.fromarray(a).save(paths[-1])
    size = paths[0].stat().st_size
    seen = []
    original = _project.pixel_features
    monkeypatch.setattr(_project, "pixel_features", lambda ims: seen.append(ims) or
                        original(ims))
    monkeypatch.setattr(_project, "PIXEL_BYTES", 30 * size)  # about 30 files
    assert len(first_rows("pixels", paths, np.arange(60), 3, 0)) == 3
    assert 25 <= len(seen[-1]) <= 35
    first_rows("pixels", paths, np.arange(60), 10, 0)  # at least 4 per pick
    assert len(seen[-1]) == 40
    arrays = _colour_images(20)  # arrays: no file to decode, no budget
    first_rows("pixels", arrays, np.arange(60), 3, 0)
    assert len(seen[-1]) == 60


def test_files_are_read_and_a_damaged_one_is_left_out(tmp_path, monkeypatch):
    paths = []
    for i, a in enumerate(_colour_images(4)):
        paths.append(tmp_path / f"img{i}.jpg")
        Image.fromarray(a).save(paths[-1])
    (tmp_path / "img5.jpg").write_bytes(b"not a jpeg")  # replaces a red one
    feats, ok = pixel_features(paths)
    assert ok.tolist() == [i != 5 for i in range(12)] and feats.shape[0] == 11
    with monkeypatch.context() as m:  # a picture too large for Pillow: left out too
        m.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        assert not pixel_features(paths[:1])[1].any()
    for seed in range(5):
        rows = first_rows("pixels", paths, np.arange(12), 11, seed)
        assert 5 not in rows.tolist()
    # fewer readable images than the batch: a random draw instead of an error
    assert len(first_rows("pixels", paths, np.arange(12), 12, 0)) == 12


def test_pixels_without_the_pool_say_so():
    with pytest.raises(ValueError, match="needs the pool's images"):
        first_rows("pixels", None, np.arange(10), 3, 0)


def test_labelled_rows_are_read_within_the_same_limits(tmp_path, monkeypatch):
    """A restarted project with many labels: its labelled images are not all read for
    each batch picked while the model loads (the byte budget holds for them too)."""
    from skpeal.labeling import _project

    paths = []
    for i, a in enumerate(_colour_images(20)):
        paths.append(tmp_path / f"img{i:02d}.png")
        Image.fromarray(a).save(paths[-1])
    seen = []
    original = _project.pixel_features
    monkeypatch.setattr(_project, "pixel_features", lambda ims: seen.append(ims) or
                        original(ims))
    monkeypatch.setattr(_project, "PIXEL_BYTES", 10 * paths[0].stat().st_size)
    rows = first_rows("pixels", paths, np.arange(30), 3, 0, labelled=np.arange(30, 60))
    assert len(rows) == 3 and set(rows.tolist()) <= set(range(30))
    assert 15 <= len(seen[-1]) <= 25  # about 10 of the pool's, about 10 labelled
