"""Validation and conversion of training data and outlier samples against the causal graph."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataError, NotEnoughDataError

DEFAULT_MIN_ROWS = 30


def _describe(cols: Sequence[object], limit: int = 8) -> str:
    shown = ", ".join(repr(c) for c in list(cols)[:limit])
    return shown + (f" and {len(cols) - limit} more" if len(cols) > limit else "")


def training_matrix(
    df: object, nodes: Sequence[Hashable], *, dropna: bool = False, min_rows: int = DEFAULT_MIN_ROWS,
    what: str = "training data",
) -> np.ndarray:
    """Float matrix (rows x ``nodes``) of the training data, after checking columns, dtypes, NaNs and size;
    ``what`` names the data in error messages."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame with one column per node, got {type(df).__name__}")
    missing = [n for n in nodes if n not in df.columns]
    if missing:
        raise DataError(f"{what} lacks columns for graph nodes {_describe(missing)}")
    sub = df.loc[:, list(nodes)]
    if sub.columns.duplicated().any():
        dup = sub.columns[sub.columns.duplicated()].unique().tolist()
        raise DataError(f"{what} has duplicate columns {_describe(dup)}")
    values = numeric_block(sub, what)
    bad_rows = ~np.isfinite(values).all(axis=1)
    if bad_rows.any():
        if dropna:
            values = values[~bad_rows]
        else:
            per_col = (~np.isfinite(values)).sum(axis=0)
            cols = [f"{n!r} ({int(c)})" for n, c in zip(nodes, per_col, strict=False) if c]
            raise DataError(
                f"{what} has {int(bad_rows.sum())} rows with NaN/inf values, in columns "
                f"{', '.join(cols[:8])}{' ...' if len(cols) > 8 else ''}; pass dropna=True to drop incomplete rows"
            )
    if values.shape[0] < min_rows:
        raise NotEnoughDataError(
            f"{what} has {values.shape[0]} usable rows; at least {min_rows} are needed "
            f"(configurable with min_rows=)"
        )
    return values


def numeric_block(frame: pd.DataFrame, what: str) -> np.ndarray:
    """Float matrix of ``frame``; :class:`DataError` naming the non-numeric columns."""
    bad = [c for c in frame.columns if not (pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]))]
    if bad:
        raise DataError(f"{what} has non-numeric columns {_describe(bad)}")
    return frame.to_numpy(dtype=float, copy=True)


def sample_frame(sample: object, nodes: Sequence[Hashable], what: str = "sample") -> np.ndarray:
    """Float matrix (rows x ``nodes``) of outlier samples given as Series, dict, DataFrame or sequence of dicts."""
    if isinstance(sample, pd.Series):
        frame = pd.DataFrame([sample.to_dict()])
    elif isinstance(sample, Mapping):
        frame = pd.DataFrame([dict(sample)])
    elif isinstance(sample, pd.DataFrame):
        frame = sample
    elif isinstance(sample, Sequence) and not isinstance(sample, (str, bytes)) and all(isinstance(s, Mapping) for s in sample):
        frame = pd.DataFrame([dict(s) for s in sample])
    else:
        raise DataError(f"{what} must be a pandas Series, dict, DataFrame or list of dicts, got {type(sample).__name__}")
    if frame.shape[0] == 0:
        raise DataError(f"{what} has no rows")
    missing = [n for n in nodes if n not in frame.columns]
    if missing:
        raise DataError(f"{what} lacks values for nodes {_describe(missing)}")
    sub = frame.loc[:, list(nodes)]
    if not all(pd.api.types.is_numeric_dtype(t) for t in sub.dtypes):  # numeric columns need no conversion
        try:
            sub = sub.apply(pd.to_numeric)
        except (TypeError, ValueError):
            pass
    values = numeric_block(sub, what)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [n for n, b in zip(nodes, bad.any(axis=0), strict=False) if b]
        raise DataError(f"{what} has NaN/inf values in {int(bad.any(axis=1).sum())} rows, columns {_describe(cols)}")
    return values
