"""collector_processor.grouping: the sort-based group helpers against numpy's and pandas' own group operations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from collector_processor.grouping import group_cummax, group_starts, unique_inverse


def test_unique_inverse_is_numpys_unique_with_inverse() -> None:
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 1000):
        x = rng.integers(-5, 40, size=n).astype(np.int64)
        values, inverse = unique_inverse(x)
        expected_values, expected_inverse = np.unique(x, return_inverse=True)
        assert np.array_equal(values, expected_values) and np.array_equal(inverse, expected_inverse)
        assert np.array_equal(values[inverse], x)


def test_group_starts_marks_each_new_value_of_a_sorted_array() -> None:
    assert group_starts(np.zeros(0, dtype=np.int64)).tolist() == []
    assert group_starts(np.array([3, 3, 4, 7, 7, 7, 9])).tolist() == [0, 2, 3, 6]


def test_group_cummax_restarts_per_group_on_both_paths() -> None:
    rng = np.random.default_rng(2)
    group = np.sort(rng.integers(0, 30, size=500)).astype(np.int64)
    for top in (1_000, 2**61):  # the offset trick, and pandas when group x width would overflow int64
        span = rng.integers(0, top, size=500, dtype=np.int64)
        rel = (rng.random(500) * span).astype(np.int64)
        expected = pd.Series(rel).groupby(group).cummax().to_numpy()
        assert np.array_equal(group_cummax(rel, group, span), expected)
