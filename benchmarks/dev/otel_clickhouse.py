"""What an OpenTelemetry Collector with its ClickHouse exporter leaves in ClickHouse, for pull-mode tests:
the ``otel_traces`` table as the exporter documents its columns, and an SDK span exporter that writes
finished spans into it the way the collector's exporter does (hex ids, the kind and status spellings of
either exporter generation, resource and span attributes as string maps, duration in ns)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from collector_processor.sql_executor import SqlExecutor, ident

NEW_KINDS = {SpanKind.INTERNAL: "Internal", SpanKind.SERVER: "Server", SpanKind.CLIENT: "Client",
             SpanKind.PRODUCER: "Producer", SpanKind.CONSUMER: "Consumer"}
OLD_KINDS = {k: "SPAN_KIND_" + k.name for k in NEW_KINDS}
NEW_STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}
OLD_STATUS = {k: "STATUS_CODE_" + k.name for k in NEW_STATUS}

COLUMNS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
           "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode",
           "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId",
           "Links.SpanId", "Links.TraceState", "Links.Attributes")


def create_otel_traces(ex: SqlExecutor, table: str = "otel_traces") -> str:
    """Create the exporter's trace table (its documented columns, engine, partitioning and order); returns the
    qualified name."""
    name = f"{ident(ex.database)}.{ident(table)}"
    ex.command(f"""CREATE TABLE IF NOT EXISTS {name} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (Timestamp DateTime64(9), Name LowCardinality(String),
                   Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    Links Nested (TraceId String, SpanId String, TraceState String,
                  Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""")
    return name


def span_row(span: ReadableSpan, old_spelling: bool = False) -> tuple:
    """One ``otel_traces`` row of a finished SDK span, as the collector's exporter writes it."""
    kinds, status = (OLD_KINDS, OLD_STATUS) if old_spelling else (NEW_KINDS, NEW_STATUS)
    ctx = span.get_span_context()
    parent = span.parent
    res = {str(k): str(v) for k, v in span.resource.attributes.items()}
    return (
        _datetime64(span.start_time), format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else "", "", span.name, kinds[span.kind],
        res.get("service.name", ""), res, span.instrumentation_scope.name if span.instrumentation_scope else "",
        "", {str(k): str(v) for k, v in (span.attributes or {}).items()}, int(span.end_time - span.start_time),
        status[span.status.status_code], span.status.description or "", [], [], [], [], [], [], [])


def _datetime64(unix_nano: int) -> str:
    """A DateTime64(9) value as ClickHouse parses it in VALUES: seconds with nine decimals."""
    return f"{unix_nano // 1_000_000_000}.{unix_nano % 1_000_000_000:09d}"


class ClickHouseSpanExporter(SpanExporter):
    """An SDK span exporter that inserts into ``otel_traces`` (alternating the exporter's two spellings of
    kinds and status codes by trace when ``mixed_spelling``)."""

    def __init__(self, ex: SqlExecutor, table: str = "otel_traces", mixed_spelling: bool = True) -> None:
        self.ex = ex
        self.table = create_otel_traces(ex, table)
        self.mixed = mixed_spelling
        self.rows = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [span_row(s, self.mixed and s.get_span_context().trace_id % 2 == 1) for s in spans]
        self.ex.insert(self.table, COLUMNS, rows)
        self.rows += len(rows)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass
