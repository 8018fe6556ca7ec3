"""Pull mode: read the spans an OpenTelemetry Collector's ClickHouse exporter writes to ``otel_traces`` and feed
them to the :class:`~collector_processor.pipeline.Pipeline`, so that everything downstream (assembly, features,
store, models, detection, explanations) is exactly what OTLP ingestion does.

The exporter inserts asynchronously (batches, and a span only once it ended), so the source reads *lagged*
windows of trace start time: ``[cursor, now - lag_s)`` in steps of at most ``window_s``; a window holds the
traces whose earliest span starts in it, with all their spans (up to ``lag_s`` later), so that a trace is never
cut at a window boundary. ``lag_s`` must therefore exceed the longest trace plus the exporter's delay. Rows become OTLP
``ResourceSpans`` (service from ``ServiceName``; the span attributes the collector names operations and peers
by; kinds and status codes in both spellings the exporter has used, ``SPAN_KIND_SERVER`` / ``Server`` and
``STATUS_CODE_ERROR`` / ``Error``) and go through :meth:`Pipeline.accept`, which spools them before the
cursor moves on: a restart resumes at the cursor and replays the spool, and a window read twice (a crash
between the two) only repeats spans, which the assembler drops as duplicates or the store replaces.

Replica ``i`` of ``N`` reads only the traces with ``cityHash64(TraceId) % N == i``: every span of a trace goes
to the same replica, and the replicas share the work without talking to each other.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collector_processor.otlp_decode import _WANTED
from collector_processor.pipeline import Pipeline, PipelineFull
from collector_processor.sql_executor import SqlError, SqlExecutor, ident, quote

log = logging.getLogger("whyslow.source")

NS = 1_000_000_000
SCOPE = "whyslow.clickhouse_source"
# the span attributes the collector reads (operation names, peers); the others are not fetched
ATTRIBUTES = tuple(sorted(k.decode() for k in _WANTED))
_KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS = {"unset": 0, "ok": 1, "error": 2}


def span_kind(text: str) -> int:
    """OTLP SpanKind number of the exporter's text (``SPAN_KIND_SERVER`` or ``Server``); 0 when unknown."""
    return _KINDS.get(str(text).lower().removeprefix("span_kind_"), 0)


def status_code(text: str) -> int:
    """OTLP status code number of the exporter's text (``STATUS_CODE_ERROR`` or ``Error``); 0 when unknown."""
    return _STATUS.get(str(text).lower().removeprefix("status_code_"), 0)


@dataclass
class SourceConfig:
    """Where and how to read: ``table`` (``otel_traces`` or ``db.table``), the lag behind now that the
    exporter needs to have written a window, the window size, the poll interval, how far back a first start
    reads, and this replica's share (``replica`` of ``replicas``)."""

    table: str = "otel_traces"
    lag_s: float = 30.0
    window_s: float = 10.0
    poll_s: float = 1.0
    backfill_s: float = 0.0
    replica: int = 0
    replicas: int = 1
    request_spans: int = 5000     # spans per request handed to the pipeline

    def validate(self) -> SourceConfig:
        parts = self.table.split(".")
        if not 1 <= len(parts) <= 2:
            raise ValueError(f"source table must be table or database.table, got {self.table!r}")
        for p in parts:
            ident(p)
        for name in ("lag_s", "window_s", "poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"source {name} must be > 0")
        if self.backfill_s < 0:
            raise ValueError("source backfill_s must be >= 0")
        if not 0 <= self.replica < self.replicas:
            raise ValueError(f"replica must be in 0..{self.replicas - 1}, got {self.replica}")
        return self


class Cursor(Protocol):
    """Where a source stopped reading (ns of span start time), persisted so that a restart resumes there."""

    def load(self) -> int | None: ...
    def save(self, until_unix_nano: int) -> None: ...


class FileCursor:
    """A cursor in a small JSON file (next to the SQLite store), replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text(encoding="utf-8"))["until_unix_nano"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable source cursor {self.path}: {exc}") from None

    def save(self, until_unix_nano: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"until_unix_nano": int(until_unix_nano)}), encoding="utf-8")
        os.replace(tmp, self.path)


class TableCursor:
    """A cursor row in the ClickHouse store's ``source_cursor`` table (one per source, replica and replica
    count). A replica without a row starts where the slowest replica of an earlier replica count stopped (a
    resharding skips nothing), or, on a first deployment, like a first start (``backfill_s``)."""

    def __init__(self, executor: SqlExecutor, source: str, replica: int, replicas: int) -> None:
        self.ex = executor
        self.table = f"{ident(executor.database)}.source_cursor"
        self.source, self.replica, self.replicas = source, int(replica), int(replicas)
        self.ex.command(f"""CREATE TABLE IF NOT EXISTS {self.table} (
    source String,
    replica UInt32,
    replicas UInt32,
    until_unix_nano Int64,
    saved_unix_nano Int64
) ENGINE = ReplacingMergeTree(saved_unix_nano)
ORDER BY (source, replicas, replica)""")

    def load(self) -> int | None:
        src = quote(self.source)
        rows = self.ex.query(f"SELECT until_unix_nano FROM {self.table} FINAL WHERE source = {src} "
                             f"AND replica = {self.replica} AND replicas = {self.replicas}")
        if rows:
            return int(rows[0][0])
        rows = self.ex.query(f"SELECT min(until_unix_nano), count() FROM {self.table} FINAL WHERE source = {src} "
                             f"AND replicas != {self.replicas}")
        return int(rows[0][0]) if rows and int(rows[0][1]) else None

    def save(self, until_unix_nano: int) -> None:
        self.ex.insert(self.table, ("source", "replica", "replicas", "until_unix_nano", "saved_unix_nano"),
                       [(self.source, self.replica, self.replicas, int(until_unix_nano), time.time_ns())])


def _ts(unix_nano: int) -> str:
    return f"fromUnixTimestamp64Nano({int(unix_nano)})"


class ClickHouseSource:
    """Reads ``otel_traces`` in lagged windows into a pipeline (see the module docstring)."""

    def __init__(self, pipeline: Pipeline, executor: SqlExecutor, cursor: Cursor,
                 config: SourceConfig | None = None) -> None:
        self.pipeline = pipeline
        self.ex = executor
        self.cursor = cursor
        self.config = (config or SourceConfig()).validate()
        parts = self.config.table.split(".")
        self.table = ".".join(ident(p) for p in ([executor.database] if len(parts) == 1 else []) + parts)
        self.c: Counter = Counter({k: 0 for k in ("windows_read", "rows_read", "rows_invalid", "spans_fed",
                                                  "read_errors", "refused_retries")})
        self._until: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reading
    def _query(self, lo: int, hi: int) -> list[tuple]:
        """Every span of the traces that *start* in ``[lo, hi)`` (their earliest span, looking back up to
        ``lag_s``), up to ``lag_s`` past ``hi``: a trace is read whole by one window, never cut at a boundary."""
        cfg = self.config
        reach = int(cfg.lag_s * NS)
        share = f" AND cityHash64(TraceId) % {int(cfg.replicas)} = {int(cfg.replica)}" if cfg.replicas > 1 else ""
        ids = (f"SELECT TraceId FROM {self.table} WHERE Timestamp >= {_ts(lo - reach)} AND Timestamp < {_ts(hi)}"
               f"{share} GROUP BY TraceId HAVING min(Timestamp) >= {_ts(lo)}")
        return self.ex.query(
            "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ParentSpanId, SpanName, SpanKind, "
            f"ServiceName, mapFilter((k, v) -> has({quote(ATTRIBUTES)}, k), SpanAttributes), Duration, StatusCode "
            f"FROM {self.table} WHERE Timestamp >= {_ts(lo)} AND Timestamp < {_ts(hi + reach)} "
            f"AND TraceId IN ({ids}) ORDER BY TraceId, Timestamp")

    def poll(self, now_unix_nano: int | None = None) -> int:
        """Read every window that ended ``lag_s`` before now; returns the spans handed to the pipeline. A read
        error leaves the cursor where it was (retried on the next poll)."""
        with self._lock:
            cfg = self.config
            now = time.time_ns() if now_unix_nano is None else int(now_unix_nano)
            end = now - int(cfg.lag_s * NS)
            if self._until is None:
                saved = self.cursor.load()
                self._until = saved if saved is not None else end - int(cfg.backfill_s * NS)
            fed = 0
            while self._until < end and not self._stop.is_set():
                hi = min(self._until + int(cfg.window_s * NS), end)
                try:
                    rows = self._query(self._until, hi)
                except SqlError as exc:
                    self.c["read_errors"] += 1
                    log.warning("reading spans from %s failed (will retry): %s", self.table, exc)
                    break
                fed += self._feed(rows)
                self.cursor.save(hi)
                self._until = hi
                self.c["windows_read"] += 1
            return fed

    def _feed(self, rows: list[tuple]) -> int:
        self.c["rows_read"] += len(rows)
        size = self.config.request_spans
        fed = 0
        for k in range(0, len(rows), size):
            req = self.to_request(rows[k:k + size])
            while True:
                try:
                    batch = self.pipeline.accept(req)
                    break
                except PipelineFull as full:  # backpressure: the cursor waits with us
                    self.c["refused_retries"] += 1
                    if self._stop.wait(full.retry_after_s):
                        raise
            fed += len(batch.spans)
        self.c["spans_fed"] += fed
        return fed

    def to_request(self, rows: list[tuple]) -> ExportTraceServiceRequest:
        """OTLP request of ``otel_traces`` rows (one ResourceSpans per service); invalid rows are counted and
        left out (the pipeline's own validation counts what it rejects)."""
        by_service: dict[str, list[Span]] = {}
        for ts, tid, sid, pid, name, kind, service, attrs, duration, status in rows:
            try:
                span = Span(trace_id=bytes.fromhex(tid), span_id=bytes.fromhex(sid),
                            parent_span_id=bytes.fromhex(pid) if pid else b"", name=str(name),
                            kind=span_kind(kind),  # type: ignore[arg-type]  # the enum's int value
                            start_time_unix_nano=int(ts),
                            end_time_unix_nano=int(ts) + int(duration),
                            attributes=[KeyValue(key=str(k), value=AnyValue(string_value=str(v)))
                                        for k, v in (attrs or {}).items()])
            except (ValueError, TypeError):
                self.c["rows_invalid"] += 1
                continue
            code = status_code(status)
            if code:
                span.status.CopyFrom(Status(code=code))  # type: ignore[arg-type]
            by_service.setdefault(str(service), []).append(span)
        req = ExportTraceServiceRequest()
        for service, spans in by_service.items():
            rs = ResourceSpans(resource=Resource(attributes=[
                KeyValue(key="service.name", value=AnyValue(string_value=service))] if service else []))
            rs.scope_spans.append(ScopeSpans(spans=spans))
            rs.scope_spans[0].scope.name = SCOPE
            req.resource_spans.append(rs)
        return req

    # ------------------------------------------------------------------ background
    def start(self) -> ClickHouseSource:
        self._thread = threading.Thread(target=self._run, name="whyslow-clickhouse-source", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except PipelineFull:
                pass  # stopping while the pipeline refused: the cursor did not move past the window
            except Exception:  # noqa: BLE001 - a bug must not kill the reader; the cursor retries the window
                self.c["read_errors"] += 1
                log.exception("pull-mode read failed")
            self._stop.wait(self.config.poll_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        """Counters plus the cursor (ns) and how far it lags behind now (s)."""
        out = dict(self.c)
        out["cursor_unix_nano"] = int(self._until or 0)
        out["cursor_lag_s"] = int((time.time_ns() - self._until) / NS) if self._until else 0
        return out
