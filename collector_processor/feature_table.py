"""The wide per-trace feature table every trace store's ``features()`` returns: one row per trace (index
``trace_id``), one column per call-graph node, plus ``__start_unix_nano`` and ``__duration_ms``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

META_COLUMNS = ("__start_unix_nano", "__duration_ms")


def empty_feature_table(columns: Sequence[str]) -> pd.DataFrame:
    """The table without rows (an unknown entry point, or nothing in the asked range)."""
    empty = pd.DataFrame(columns=[*columns, *META_COLUMNS], dtype=float)
    empty.index.name = "trace_id"
    return empty


def feature_table(values: np.ndarray, columns: Sequence[str], trace_ids: Sequence[str],
                  start_unix_nano: Sequence[int], duration_ms: Sequence[float]) -> pd.DataFrame:
    """The table of ``values`` (traces x ``columns``), rows in the order given (oldest first by contract)."""
    df = pd.DataFrame(values, columns=list(columns), index=pd.Index(list(trace_ids), name="trace_id"))
    df["__start_unix_nano"] = np.asarray(start_unix_nano, dtype=np.int64)
    df["__duration_ms"] = np.asarray(duration_ms, dtype=float)
    return df
