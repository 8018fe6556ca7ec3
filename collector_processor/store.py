"""The trace store: what the pipeline writes and the backend reads (a Protocol, so that a second backend --
ClickHouse -- can implement it beside :class:`collector_processor.sqlite_store.SqliteStore`).

It holds what the collector knows: the spool of accepted requests, the assembled traces with their per-node
features, the call graph learned per entry point, and their retention. Whatever a reader concludes about those
traces is kept elsewhere; a reader that keeps records about traces registers :meth:`TraceStore.on_delete` to
forget them when retention deletes the traces.
The records it carries are in :mod:`collector_processor.records`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Protocol

import pandas as pd

from collector_processor.records import AnalysedBatch, CallGraph, TraceFeatures

# traces deleted per retention step: a store far beyond its bounds is trimmed in bounded steps, ingest going on
RETENTION_CHUNK = 20_000


class TraceStore(Protocol):
    """Traces, their features and call graphs: written by the pipeline, read by the backend."""

    # --- written by the pipeline
    def spool_append(self, payload: bytes) -> int:
        """Durably keep one accepted OTLP request until the traces it feeds are stored; returns its spool id."""
        ...

    def spool_pending(self) -> Iterator[tuple[int, bytes]]:
        """(spool id, request bytes) of the requests whose traces were not stored yet (replayed at start)."""
        ...

    def write_batch(self, batch: AnalysedBatch | None, release_spool: Iterable[int] = ()) -> int:
        """Store a batch of completed traces and release their spool ids atomically; a trace id stored before
        is replaced. Returns how many traces were replaced."""
        ...

    # --- read by the backend
    def entry_points(self) -> list[str]:
        """Entry point node ids, most traces first."""
        ...

    def graph(self, entry: str) -> CallGraph:
        """The (acyclic) call graph learned for an entry point; empty when unknown."""
        ...

    def features(self, entry: str, since_unix_nano: int | None = None, until_unix_nano: int | None = None,
                 limit: int | None = None, exclude: Collection[str] = (),
                 complete_only: bool = False, value: str = "latency") -> pd.DataFrame:
        """Wide latencies (ms) per trace of the entry point (index ``trace_id``, one column per node, plus
        ``__start_unix_nano`` and ``__duration_ms``), oldest first; ``limit`` keeps the newest of the traces
        whose ids are not in ``exclude``; ``complete_only`` leaves out incomplete traces. ``value="error"``:
        each node's count of failed spans instead of its latency (0 where it did not fail or was not called);
        ``value="count"``: each node's number of spans, i.e. calls per request (0 where it was not called)."""
        ...

    def trace_features(self, trace_id: str) -> TraceFeatures | None:
        """Everything stored about one trace; None when unknown."""
        ...

    # --- housekeeping
    def retention(self, max_age_s: float | None = None, max_rows: int | None = None) -> int:
        """Delete traces older than ``max_age_s`` (start time) and beyond the newest ``max_rows``, then call
        the :meth:`on_delete` listeners with their ids; returns how many were deleted."""
        ...

    def on_delete(self, listener: Callable[[Sequence[str]], object]) -> None:
        """Register ``listener(trace_ids)``, called after retention deleted those traces."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts of the store's tables (``traces``, ``spool``, ... ) for stats and tests."""
        ...

    def close(self) -> None:
        """Release connections and files (idempotent)."""
        ...
