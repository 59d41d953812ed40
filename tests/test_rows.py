"""Row sums and column extremes give numpy's own reductions bit for bit (the mesh, GLB and
polygon checks rely on it to write the same tiles), on values spread over 16 orders of magnitude."""
from __future__ import annotations

import numpy as np
import pytest

from geo.rows import column_max, column_min, row_norms, row_sums


def _values(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.normal(size=(n, k)) * rng.choice([1e-8, 1.0, 1e8], size=(n, k))


@pytest.mark.parametrize("k", range(1, 8))
def test_row_sums_and_norms_equal_numpys_bits(k: int):
    x = _values(np.random.default_rng(k), 200_000, k)
    assert np.array_equal(row_sums(x), x.sum(axis=1))
    assert np.array_equal(row_norms(x), np.linalg.norm(x, axis=1))
    if k >= 3:  # the order of the adds matters: a sum right to left differs somewhere
        assert not np.array_equal(row_sums(x), x[:, ::-1].sum(axis=1))


def test_row_sums_refuse_eight_columns():
    with pytest.raises(ValueError, match="1 to 7 columns"):
        row_sums(np.zeros((2, 8)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
def test_column_extremes_equal_numpys(dtype):
    x = (_values(np.random.default_rng(9), 50_000, 3) * (1e-4 if dtype is np.int16 else 1)).astype(dtype)
    for got, want in ((column_min(x), x.min(axis=0)), (column_max(x), x.max(axis=0))):
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
