"""The results store: what the backend concludes about the collector's traces -- outlier marks, explanations,
fitted models (and, later, regressions). A Protocol, so that the ClickHouse backend can implement it beside
:class:`plugin.sqlite_results.SqliteResultsStore`.

It sits beside the collector's trace store (``collector_processor.store.TraceStore``) in the same database, so
results join with their traces (:meth:`ResultsStore.outliers` reports each mark with its trace's entry point,
start and duration). It follows the trace store's retention: :meth:`ResultsStore.forget` is registered with
``TraceStore.on_delete`` (see :func:`follow_retention`), so deleting a trace deletes its results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from collector_processor.store import TraceStore
from plugin.payloads import ExplanationPayload


@dataclass
class OutlierMark:
    """A trace the detector found slow, with what its trace record says about it."""

    trace_id: str
    score: float
    entry: str
    start_unix_nano: int
    duration_ms: float


class ResultsStore(Protocol):
    """Outlier marks, explanations and models: written and read by the backend only."""

    # --- outliers and their explanations (keyed by trace id, deleted with the trace)
    def mark_outlier(self, trace_id: str, score: float) -> None:
        """Mark a stored trace as an outlier with its IT score (a second mark updates the score)."""
        ...

    def outliers(self, from_unix_nano: int | None = None, to_unix_nano: int | None = None,
                 entry: str | None = None, min_score: float | None = None,
                 limit: int | None = None) -> list[OutlierMark]:
        """Marks of stored traces started in [from, to), optionally of one entry point and at least
        ``min_score``, newest first."""
        ...

    def outlier_ids(self, entry: str | None = None) -> set[str]:
        """Ids of the marked traces (of one entry point): what model training leaves out."""
        ...

    def save_explanation(self, trace_id: str, payload: ExplanationPayload) -> None:
        """Keep a trace's explanation (replacing an earlier one)."""
        ...

    def explanation(self, trace_id: str) -> ExplanationPayload | None:
        """The saved explanation of a trace (as saved; an older payload version is the caller's to judge)."""
        ...

    def forget(self, trace_ids: Sequence[str]) -> int:
        """Delete the marks and explanations of these traces (the trace store deleted them); returns how many
        rows went."""
        ...

    # --- models (keyed by entry point)
    def save_model(self, entry: str, blob: bytes, meta: Mapping[str, Any] | None = None) -> None:
        """Persist an entry point's serialised model with JSON-able metadata (replacing the previous one)."""
        ...

    def load_model(self, entry: str) -> tuple[bytes, dict[str, Any]] | None:
        """(blob, metadata) of an entry point's persisted model; None when there is none."""
        ...

    # --- housekeeping
    def counts(self) -> dict[str, int]:
        """Row counts (``outliers``, ``explanations``, ``models``) for stats and tests."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def follow_retention(traces: TraceStore, results: ResultsStore) -> None:
    """Make ``results`` forget what it holds about the traces the trace store's retention deletes."""
    traces.on_delete(results.forget)
