"""ParquetFeatureStore's writes (no Ray needed): atomic, nothing left behind on failure."""

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
