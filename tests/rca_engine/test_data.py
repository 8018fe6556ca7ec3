"""rca_engine.data: training data and outlier samples checked against the graph's nodes, converted to float."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rca_engine.data import DEFAULT_MIN_ROWS, numeric_block, sample_frame, training_matrix
from rca_engine.errors import DataError, NotEnoughDataError, RCAError

NODES = ["c", "a", "b"]


def frame(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.integers(0, 9, rows), "c": rng.exponential(size=rows),
                         "unused": ["x"] * rows})


def test_training_matrix_takes_the_node_columns_in_node_order_as_float() -> None:
    df = frame()
    values = training_matrix(df, NODES)
    assert values.dtype == np.float64 and values.shape == (40, 3)
    np.testing.assert_array_equal(values, np.column_stack([df[n].astype(float) for n in NODES]))
    values[0, 0] = 1e9
    assert df["c"].iloc[0] != 1e9  # a copy: the caller's data is untouched


def test_training_matrix_names_what_is_wrong() -> None:
    with pytest.raises(DataError, match="pandas DataFrame.*got dict"):
        training_matrix({"a": [1.0]}, ["a"])
    with pytest.raises(DataError, match=r"lacks columns for graph nodes 'z'"):
        training_matrix(frame(), ["a", "z"])
    many = [f"n{i}" for i in range(11)]
    with pytest.raises(DataError, match=r"'n7' and 3 more"):
        training_matrix(frame(), many)
    with pytest.raises(DataError, match=r"non-numeric columns 'unused'"):
        training_matrix(frame(), ["a", "unused"])
    flags = frame().assign(flag=True)
    with pytest.raises(DataError, match=r"non-numeric columns 'flag'"):
        training_matrix(flags, ["a", "flag"])
    dup = pd.concat([frame()[["a"]], frame()[["a"]]], axis=1)
    with pytest.raises(DataError, match=r"duplicate columns 'a'"):
        training_matrix(dup, ["a"])
    with pytest.raises(DataError, match=r"^incident data lacks"):
        training_matrix(frame(), ["z"], what="incident data")


def test_nan_rows_are_counted_per_column_or_dropped() -> None:
    df = frame(50).astype({"b": float})
    df.loc[[3, 7], "a"] = np.nan
    df.loc[7, "b"] = np.inf
    df.loc[9, "c"] = -np.inf
    with pytest.raises(DataError, match=r"3 rows with NaN/inf values, in columns 'a' \(2\), 'b' \(1\), 'c' \(1\)"):
        training_matrix(df, ["a", "b", "c"])
    kept = training_matrix(df, ["a", "b", "c"], dropna=True)
    expected = df[["a", "b", "c"]].replace([np.inf, -np.inf], np.nan).dropna().to_numpy(float)
    np.testing.assert_array_equal(kept, expected)


def test_too_few_usable_rows_is_not_enough_data() -> None:
    assert issubclass(NotEnoughDataError, DataError) and issubclass(DataError, RCAError)
    with pytest.raises(NotEnoughDataError, match=f"has {DEFAULT_MIN_ROWS - 1} usable rows; at least {DEFAULT_MIN_ROWS}"):
        training_matrix(frame(DEFAULT_MIN_ROWS - 1), NODES)
    assert training_matrix(frame(DEFAULT_MIN_ROWS), NODES).shape[0] == DEFAULT_MIN_ROWS
    df = frame(12)
    df.loc[0, "a"] = np.nan
    with pytest.raises(NotEnoughDataError, match="has 11 usable rows; at least 12"):
        training_matrix(df, ["a"], dropna=True, min_rows=12)
    assert training_matrix(df, ["a"], dropna=True, min_rows=11).shape == (11, 1)


def test_numeric_block_accepts_numbers_and_refuses_text_and_booleans() -> None:
    ok = pd.DataFrame({"i": [1, 2], "f": [0.5, 1.5], "u": np.array([3, 4], dtype=np.uint8)})
    np.testing.assert_array_equal(numeric_block(ok, "x"), [[1, 0.5, 3], [2, 1.5, 4]])
    with pytest.raises(DataError, match=r"^x has non-numeric columns 's', 'b'$"):
        numeric_block(pd.DataFrame({"s": ["1"], "b": [True], "f": [1.0]}), "x")


def test_every_sample_form_gives_the_same_rows() -> None:
    row = {"a": 1.5, "b": 2, "c": 0.25, "extra": "ignored"}
    expected = np.array([[0.25, 1.5, 2.0]])
    for sample in (row, pd.Series(row), pd.DataFrame([row]), [row]):
        np.testing.assert_array_equal(sample_frame(sample, NODES), expected)
    two = sample_frame([row, {**row, "a": -1.0}], NODES)
    np.testing.assert_array_equal(two, [[0.25, 1.5, 2.0], [0.25, -1.0, 2.0]])
    np.testing.assert_array_equal(sample_frame({"a": "1.5", "b": "2", "c": 0.25}, NODES), expected)  # numeric text


@pytest.mark.parametrize(("sample", "message"), [
    ("a=1", "must be a pandas Series, dict, DataFrame or list of dicts, got str"),
    (3.0, "got float"),
    ([{"a": 1.0}, 2.0], "got list"),
    (pd.DataFrame(columns=NODES), "has no rows"),
    ({"a": 1.0, "b": 2.0}, "lacks values for nodes 'c'"),
    ({"a": 1.0, "b": "slow", "c": 1.0}, "non-numeric columns 'b'"),
    ([{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": np.nan, "b": 2.0, "c": np.inf}], "NaN/inf values in 1 rows, columns 'c', 'a'"),
])
def test_bad_samples_are_named(sample: object, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sample_frame(sample, NODES, what="sample")
