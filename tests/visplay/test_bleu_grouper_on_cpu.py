"""`bleu._Grouper`, the step that numbers the distinct (match counts, length) tuples of every pair, against
`np.unique(..., axis=0)` on the stacked columns: ids in the tuples' lexicographic order and the tuple behind each id,
also where its packed key must be compacted before it overflows, widened from int32 to int64 past 2**31, or where
a column's values are too wide for a lookup table."""

from __future__ import annotations

import numpy as np
import pytest

from verl_ext.visplay.bleu import _TABLE_LIMIT, _Grouper


def group(columns: list[np.ndarray], radices: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    grouper = _Grouper()
    for column, radix in zip(columns, radices, strict=True):
        grouper.add(column, radix)
    return grouper.finish()


def assert_same_as_unique(columns: list[np.ndarray], radices: list[int]) -> None:
    ids, table = group(columns, radices)
    rows, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    assert np.array_equal(ids, inverse.reshape(-1))
    assert len(table) == len(columns)
    for j, column in enumerate(table):
        assert np.array_equal(column, rows[:, j])


def test_many_narrow_columns_are_compacted_before_the_key_overflows():
    rng = np.random.default_rng(0)
    columns = [rng.integers(0, 256, 20_000) for _ in range(6)]  # 256**6 = 2**48: no int32 key holds it packed
    assert_same_as_unique(columns, [256] * 6)


def test_wide_columns_are_compacted_before_the_key_overflows():
    rng = np.random.default_rng(1)
    columns = [rng.integers(0, 1 << 20, 5_000) for _ in range(4)]  # 2**80 packed
    assert_same_as_unique(columns, [1 << 20] * 4)


def test_three_columns_at_the_table_limit_over_a_million_rows_are_compacted_in_time():
    # 2**20 rows: the lookup table may reach _TABLE_LIMIT = 2**22, and three radices of 2**22 pack to 2**66
    rng = np.random.default_rng(4)
    columns = [rng.integers(0, _TABLE_LIMIT, 1 << 20) for _ in range(3)]
    assert_same_as_unique(columns, [_TABLE_LIMIT] * 3)


def test_keys_widen_to_int64_once_the_packed_range_passes_2_to_the_31():
    rng = np.random.default_rng(2)
    n = 1 << 20
    first = rng.permutation(n)  # 2**20 distinct values, so the compacted range stays 2**20
    second = rng.integers(0, 1 << 12, n)  # 2**20 x 2**12 = 2**32: past int32
    assert_same_as_unique([first, second], [n, 1 << 12])


def test_a_column_wider_than_the_lookup_table_is_numbered_first():
    rng = np.random.default_rng(3)
    wide = rng.choice(np.arange(0, 1 << 40, 1 << 20, dtype=np.int64), 3_000)  # radix far above _TABLE_LIMIT
    narrow = rng.integers(0, 7, 3_000)
    assert_same_as_unique([wide, narrow], [1 << 40, 7])
    assert_same_as_unique([narrow, wide], [7, 1 << 40])
    assert (1 << 40) > _TABLE_LIMIT


@pytest.mark.parametrize("radix", [1, 2, 5])
def test_tiny_radices(radix):
    rng = np.random.default_rng(radix)
    columns = [rng.integers(0, radix, 50) for _ in range(3)]
    assert_same_as_unique(columns, [radix] * 3)
