"""The storage interface the pipeline writes and the backend reads (a Protocol: a scale-out backend can
implement it later), plus the records that travel through it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from collector_processor.batch_analysis import AnalysedBatch
from collector_processor.graph import CallGraph


@dataclass
class NodeFeatures:
    """One node's values in one trace (ms)."""

    latency_ms: float
    own_ms: float
    gap_ms: float
    count: int
    error: bool
    start_offset_ms: float


@dataclass
class TraceFeatures:
    """A stored trace: entry point, timing and per-node features."""

    trace_id: str
    entry: str
    start_unix_nano: int
    duration_ms: float
    complete: bool
    n_spans: int
    nodes: dict[str, NodeFeatures] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        """Node -> latency (ms): the wide feature row of this trace."""
        return {n: f.latency_ms for n, f in self.nodes.items()}


@dataclass
class OutlierMark:
    trace_id: str
    score: float
    entry: str
    start_unix_nano: int
    duration_ms: float


class Store(Protocol):
    """What the pipeline writes and the backend reads."""

    # written by the pipeline
    def spool_append(self, payload: bytes) -> int: ...
    def spool_pending(self) -> Iterator[tuple[int, bytes]]: ...
    def write_batch(self, batch: AnalysedBatch | None, release_spool: Iterable[int] = ()) -> int: ...
    # read by the backend
    def entry_points(self) -> list[str]: ...
    def graph(self, entry: str) -> CallGraph: ...
    def features(self, entry: str, since_unix_nano: int | None = None, until_unix_nano: int | None = None,
                 limit: int | None = None, exclude_outliers: bool = False,
                 complete_only: bool = False) -> pd.DataFrame: ...
    def trace_features(self, trace_id: str) -> TraceFeatures | None: ...
    def mark_outlier(self, trace_id: str, score: float) -> None: ...
    def outliers(self, from_unix_nano: int | None = None, to_unix_nano: int | None = None,
                 entry: str | None = None, min_score: float | None = None,
                 limit: int | None = None) -> list[OutlierMark]: ...
    def save_explanation(self, trace_id: str, payload: dict[str, Any]) -> None: ...
    def explanation(self, trace_id: str) -> dict[str, Any] | None: ...
    def save_model(self, entry: str, blob: bytes, meta: dict[str, Any] | None = None) -> None: ...
    def load_model(self, entry: str) -> tuple[bytes, dict[str, Any]] | None: ...
    def retention(self, max_age_s: float | None = None, max_rows: int | None = None) -> int: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...
