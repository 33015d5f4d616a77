"""The benchmarks' IDX reader (Fashion-MNIST's format), on tiny files the test writes."""

import gzip
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
from bench_data import read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compressed", [True, False])
def test_read_idx_round_trip(tmp_path, compressed):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 255], dtype=np.uint8)
    for name, array in (("images", images), ("labels", labels)):
        path = tmp_path / (name + (".gz" if compressed else ""))
        with (gzip.open if compressed else open)(path, "wb") as f:
            f.write(idx_bytes(array))
        np.testing.assert_array_equal(read_idx(str(path)), array)


def test_read_idx_rejects_other_files(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        read_idx(str(path))
