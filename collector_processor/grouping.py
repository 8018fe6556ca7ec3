"""Sort-based group operations on int64 numpy arrays, shared by the call-graph and feature steps of the analyser."""

from __future__ import annotations

import numpy as np
import pandas as pd


def unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values and the inverse index (sort-based: faster than np.unique's hash path here)."""
    order = np.argsort(x, kind="stable")
    sx = x[order]
    new = np.empty(len(x), dtype=bool)
    if len(x):
        new[0] = True
        np.not_equal(sx[1:], sx[:-1], out=new[1:])
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return sx[new], inverse


def group_starts(group: np.ndarray) -> np.ndarray:
    """Positions where a sorted group array starts a new group."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]])


def group_cummax(rel: np.ndarray, group: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Running maximum of ``rel`` (values in [0, span]) restarting at each group of a sorted group array.

    One ``maximum.accumulate`` over ``rel`` shifted by ``group rank x width``, so that no group can carry its
    maximum into the next; pandas' grouped cummax when the shift would overflow int64 (absurd durations)."""
    width = int(span.max(initial=0)) + 1
    starts = group_starts(group)
    rank = np.cumsum(np.isin(np.arange(len(group)), starts)) - 1
    if len(starts) * width < 2**62:
        base = rank * width
        return np.maximum.accumulate(base + rel) - base
    return pd.Series(rel).groupby(group).cummax().to_numpy()
