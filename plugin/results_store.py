"""The results store: what the backend concludes about the collector's traces -- outlier marks, explanations,
fitted models and regressions (answers of ``GET /api/v1/regression`` and the continuous detection's findings). A Protocol, so that the ClickHouse backend can implement it beside
:class:`plugin.sqlite_results.SqliteResultsStore`.

It sits beside the collector's trace store (``collector_processor.store.TraceStore``) in the same database, so
results join with their traces (:meth:`ResultsStore.outliers` reports each mark with its trace's entry point,
start and duration). It follows the trace store's retention: :meth:`ResultsStore.forget` is registered with
``TraceStore.on_delete`` (see :func:`follow_retention`), so deleting a trace deletes its results, and a regression
goes when the traces of its window are gone.
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
    kind: str = "latency"  # "latency" (slow) | "error" (failed); a trace may be marked as both


REGRESSION_SOURCES = ("query", "watch")  # GET /api/v1/regression | continuous detection (plugin.watch)


@dataclass
class RegressionRecord:
    """A stored regression: the JSON answer (``payload``) about ``entry``'s window [from, to) and where it came
    from; ``key`` identifies it (saving the same key again replaces it)."""

    key: str
    source: str  # "query" | "watch"
    entry: str
    from_unix_nano: int
    to_unix_nano: int
    payload: dict[str, Any]
    created_unix_nano: int = 0  # set by the store

    def __post_init__(self) -> None:
        if self.source not in REGRESSION_SOURCES:
            raise ValueError(f"source must be one of {', '.join(REGRESSION_SOURCES)}, not {self.source!r}")

    @property
    def summary(self) -> str:
        return str(self.payload.get("summary", ""))

    @property
    def top_service(self) -> str:
        """The service that moved the statistic most (a query's first service, the watch's lead service)."""
        services = self.payload.get("services") or []
        if services and isinstance(services[0], dict):
            return str(services[0].get("service", ""))
        return str(self.payload.get("lead_service") or "")


class ResultsStore(Protocol):
    """Outlier marks, explanations and models: written and read by the backend only."""

    # --- outliers and their explanations (keyed by trace id, deleted with the trace)
    def mark_outlier(self, trace_id: str, score: float, kind: str = "latency") -> None:
        """Mark a stored trace as an outlier of ``kind`` (``latency`` | ``error``) with its IT score (a second
        mark of the same kind updates the score)."""
        ...

    def outliers(self, from_unix_nano: int | None = None, to_unix_nano: int | None = None,
                 entry: str | None = None, min_score: float | None = None,
                 limit: int | None = None, kind: str | None = None) -> list[OutlierMark]:
        """Marks of stored traces started in [from, to), optionally of one entry point, at least
        ``min_score`` and of one ``kind`` (None: both), newest first."""
        ...

    def outlier_ids(self, entry: str | None = None) -> set[str]:
        """Ids of the marked traces of either kind (of one entry point): what model training leaves out."""
        ...

    def save_explanation(self, trace_id: str, payload: ExplanationPayload) -> None:
        """Keep a trace's explanation of ``payload["kind"]`` (default ``latency``), replacing an earlier one of that
        kind."""
        ...

    def explanation(self, trace_id: str, kind: str = "latency") -> ExplanationPayload | None:
        """The saved explanation of ``kind`` of a trace (as saved; an older payload version is the caller's to judge)."""
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

    # --- regressions (keyed by RegressionRecord.key, deleted when the traces of their window are gone)
    def save_regression(self, record: RegressionRecord) -> None:
        """Keep a regression (replacing one saved under the same key)."""
        ...

    def regressions(self, entry: str | None = None, source: str | None = None, from_unix_nano: int | None = None,
                    to_unix_nano: int | None = None, limit: int | None = None) -> list[RegressionRecord]:
        """Stored regressions whose window overlaps [from, to), optionally of one entry point and source, newest
        window first."""
        ...

    # --- housekeeping
    def counts(self) -> dict[str, int]:
        """Row counts (``outliers``, ``explanations``, ``models``, ``regressions``, ...) for stats and tests."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def follow_retention(traces: TraceStore, results: ResultsStore) -> None:
    """Make ``results`` forget what it holds about the traces the trace store's retention deletes."""
    traces.on_delete(results.forget)
