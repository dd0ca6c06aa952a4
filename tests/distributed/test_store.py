"""ParquetFeatureStore's writes (no Ray needed): atomic, nothing left behind on failure."""

import os

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet")

from skpeal.distributed.store import ParquetFeatureStore  # noqa: E402


def test_failed_write_leaves_no_file_and_a_retry_succeeds(tmp_path, monkeypatch):
    store = ParquetFeatureStore(tmp_path / "features")
    keys = [bytes([i]) * 16 for i in range(3)]
    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    real = pq.write_table

    def half_then_fail(table, where, *a, **k):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_then_fail)
    with pytest.raises(OSError, match="cannot write .*part-.*parquet"):
        store.write("space", keys, feats)
    space_dir = next((tmp_path / "features").iterdir())
    assert list(space_dir.iterdir()) == []  # neither the part nor a temporary file
    monkeypatch.setattr(pq, "write_table", real)
    assert store.write("space", keys, feats) == 3
    assert [p.name.startswith("part-") for p in space_dir.iterdir()] == [True]
    found, got = store.read("space", keys, store.index("space"))
    assert found.all()
    np.testing.assert_array_equal(got, feats)


def test_index_reads_each_part_file_once_per_process(tmp_path, monkeypatch):
    store = ParquetFeatureStore(tmp_path / "f")
    a, b = [bytes([i]) * 16 for i in range(2)], [bytes([i]) * 16 for i in range(2, 5)]
    store.write("s", a, np.zeros((2, 3), dtype=np.float32))
    real, reads = pq.read_table, []

    def counting(path, *args, **kwargs):
        reads.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", counting)
    assert set(store.index("s")) == set(a) and len(reads) == 1
    store.write("s", b, np.ones((3, 3), dtype=np.float32))  # a later round's new images
    index = ParquetFeatureStore(tmp_path / "f").index("s")  # another query's copy
    assert set(index) == set(a + b) and len(reads) == 2  # only the new part file was read
    found, got = store.read("s", b + a, index)
    assert found.all() and got.tolist() == [[1.0] * 3] * 3 + [[0.0] * 3] * 2
    for part in (tmp_path / "f" / "s").iterdir():  # the store wiped: nothing stale kept
        if part.name.startswith("part-"):
            part.unlink()
    store.write("s", a[:1], np.full((1, 3), 7, dtype=np.float32))
    index = store.index("s")
    assert set(index) == set(a[:1])
    assert store.read("s", a, index)[1].tolist() == [[7.0] * 3]
