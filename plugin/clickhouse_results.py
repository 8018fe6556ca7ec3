"""The backend's results in ClickHouse (outlier marks, explanations, fitted models), next to the trace store's
tables in the same database: :class:`plugin.results_store.ResultsStore` on ClickHouse, and the pair of stores
`whyslow serve --store clickhouse://…` opens.

Tables (public schema, see README "ClickHouse store"): ``outliers`` and ``explanations`` keyed by trace id and
``models`` keyed by entry point, all ``ReplacingMergeTree`` (the newest version wins; reads use ``FINAL``), so
that any replica may write and every replica reads the same answer. ``explanations`` carries the payload as
JSON plus flat columns (entry, start time, score, top contributor) for Grafana's ClickHouse data source.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from collector_processor.clickhouse_store import DEFAULT_TTL_S, ClickHouseTraceStore
from collector_processor.sql_executor import SqlExecutor, connect, ident, parse_target, quote
from plugin.payloads import ExplanationPayload
from plugin.results_store import OutlierMark, RegressionRecord, follow_retention
from plugin.sqlite_results import _json_default

# kind -> (marks table, explanations table), as in the SQLite results store
_TABLES = {"latency": ("outliers", "explanations"), "error": ("error_outliers", "error_explanations")}
_BY_TRACE = ("outliers", "explanations", "error_outliers", "error_explanations")


def _tables(kind: str) -> tuple[str, str]:
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(_TABLES)}, not {kind!r}") from None


def results_schema(db: str, ttl_s: int = DEFAULT_TTL_S) -> list[str]:
    """CREATE statements of the results tables in database ``db``."""
    d = ident(db)
    ttl = int(ttl_s)
    # latency and error results share one layout: '' and 'error_' prefixed tables
    def kinds(prefix: str) -> list[str]:
        return [
        f"""CREATE TABLE IF NOT EXISTS {d}.{prefix}outliers (
    trace_id String,
    score Float64,
    marked_unix_nano Int64,
    marked_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(marked_unix_nano, 'UTC')
) ENGINE = ReplacingMergeTree(marked_unix_nano)
ORDER BY trace_id
TTL toDateTime(marked_time) + INTERVAL {ttl} SECOND""",
        f"""CREATE TABLE IF NOT EXISTS {d}.{prefix}explanations (
    trace_id String,
    entry LowCardinality(String),
    start_unix_nano Int64,
    start_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(start_unix_nano, 'UTC'),
    target_latency_ms Float64,
    outlier_score Float64,
    is_outlier UInt8,
    top_service LowCardinality(String),
    top_operation String,
    top_share Float64,
    summary String,
    payload String,
    replica LowCardinality(String),
    created_unix_nano Int64
) ENGINE = ReplacingMergeTree(created_unix_nano)
ORDER BY trace_id
TTL toDateTime(fromUnixTimestamp64Nano(created_unix_nano, 'UTC')) + INTERVAL {ttl} SECOND""",
        ]

    return kinds("") + kinds("error_") + [regressions_schema(d, ttl)] + [
        f"""CREATE TABLE IF NOT EXISTS {d}.models (
    entry String,
    blob String,
    meta String,
    replica LowCardinality(String),
    saved_unix_nano Int64
) ENGINE = ReplacingMergeTree(saved_unix_nano)
ORDER BY entry""",
    ]


def regressions_schema(d: str, ttl: int) -> str:
    """The ``regressions`` table (``d`` quoted): one row per stored regression, the JSON answer plus flat columns
    for Grafana; kept like the traces (a TTL from the time it was written; retention's deletions in ``forget``)."""
    return f"""CREATE TABLE IF NOT EXISTS {d}.regressions (
    key String,
    source LowCardinality(String),
    entry LowCardinality(String),
    from_unix_nano Int64,
    to_unix_nano Int64,
    window_end DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(to_unix_nano, 'UTC'),
    stat LowCardinality(String),
    observed_change Float64,
    significant UInt8,
    top_service LowCardinality(String),
    summary String,
    payload String,
    replica LowCardinality(String),
    created_unix_nano Int64
) ENGINE = ReplacingMergeTree(created_unix_nano)
ORDER BY key
TTL toDateTime(fromUnixTimestamp64Nano(created_unix_nano, 'UTC')) + INTERVAL {ttl} SECOND"""


class ClickHouseResultsStore:
    """:class:`plugin.results_store.ResultsStore` on ClickHouse, beside the trace store's tables (``outliers``
    joins ``traces``); opening it forgets the results of traces that are gone, as the SQLite one does."""

    def __init__(self, executor: SqlExecutor, replica: str = "0", ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ex = executor
        self.db = executor.database
        self.replica = str(replica)
        self._closed = False
        self._lock = threading.Lock()
        for stmt in results_schema(self.db, int(ttl_s)):
            self.ex.command(stmt)
        if self.ex.query(f"EXISTS TABLE {self.t('traces')}")[0][0]:
            for table in _BY_TRACE:
                self.ex.command(f"DELETE FROM {self.t(table)} WHERE trace_id NOT IN "
                                f"(SELECT trace_id FROM {self.t('traces')})")

    def t(self, table: str) -> str:
        """A table of this store's database, qualified."""
        if self._closed:
            raise RuntimeError("results store is closed")
        return f"{ident(self.db)}.{ident(table)}"

    # ---------------------------------------------------------------- outlier marks
    def mark_outlier(self, trace_id: str, score: float, kind: str = "latency") -> None:
        self.ex.insert(self.t(_tables(kind)[0]), ("trace_id", "score", "marked_unix_nano"),
                       [(str(trace_id).lower(), float(score), _version())])

    def outliers(self, from_unix_nano: int | None = None, to_unix_nano: int | None = None,
                 entry: str | None = None, min_score: float | None = None,
                 limit: int | None = None, kind: str | None = None) -> list[OutlierMark]:
        """Marked outliers (joined with their trace), newest first; ``kind`` None: both kinds."""
        where = ["1"]
        if from_unix_nano is not None:
            where.append(f"t.start_unix_nano >= {int(from_unix_nano)}")
        if to_unix_nano is not None:
            where.append(f"t.start_unix_nano < {int(to_unix_nano)}")
        if entry is not None:
            where.append(f"t.entry = {quote(entry)}")
        if min_score is not None:
            where.append(f"o.score >= {quote(float(min_score))}")
        marks = " UNION ALL ".join(f"SELECT trace_id, score, '{k}' AS kind FROM {self.t(_tables(k)[0])} FINAL"
                                   for k in (_TABLES if kind is None else [kind]))
        sql = (f"SELECT o.trace_id, o.score, t.entry, t.start_unix_nano, t.duration_ms, o.kind "
               f"FROM ({marks}) AS o "
               f"INNER JOIN (SELECT trace_id, entry, start_unix_nano, duration_ms FROM {self.t('traces')} FINAL) AS t "
               f"ON t.trace_id = o.trace_id WHERE {' AND '.join(where)} "
               "ORDER BY t.start_unix_nano DESC, o.trace_id DESC, o.kind DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [OutlierMark(str(r[0]), float(r[1]), str(r[2]), int(r[3]), float(r[4]), str(r[5]))
                for r in self.ex.query(sql)]

    def outlier_ids(self, entry: str | None = None) -> set[str]:
        """Ids of the marked traces of either kind (of one entry point): what model training leaves out."""
        out: set[str] = set()
        for marks, _ in _TABLES.values():
            if entry is None:
                out |= {str(r[0]) for r in self.ex.query(f"SELECT DISTINCT trace_id FROM {self.t(marks)}")}
            else:
                out |= {str(r[0]) for r in self.ex.query(
                    f"SELECT DISTINCT trace_id FROM {self.t(marks)} WHERE trace_id IN "
                    f"(SELECT trace_id FROM {self.t('traces')} WHERE entry = {quote(entry)})")}
        return out

    # ---------------------------------------------------------------- explanations
    def save_explanation(self, trace_id: str, payload: ExplanationPayload) -> None:
        text = json.dumps(payload, allow_nan=False, default=_json_default)
        p = cast(Mapping[str, Any], payload)
        top: Mapping[str, Any] = next((c for c in p.get("contributions", ()) if c.get("contribution", 0) > 0), {})
        summary = ""
        try:
            from plugin.explain import summary_text

            summary = summary_text(payload)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            summary = ""
        self.ex.insert(
            self.t(_tables(str(p.get("kind", "latency")))[1]),
            ("trace_id", "entry", "start_unix_nano", "target_latency_ms", "outlier_score", "is_outlier",
             "top_service", "top_operation", "top_share", "summary", "payload", "replica", "created_unix_nano"),
            [(str(trace_id).lower(), str(p.get("entry", "")), int(p.get("start_unix_nano") or 0),
              float(p.get("target_latency_ms") or 0.0), float(p.get("outlier_score") or 0.0),
              int(bool(p.get("is_outlier"))), str(top.get("service", "")), str(top.get("operation", "")),
              float(top.get("share") or 0.0), summary, text, self.replica, _version())])

    def explanation(self, trace_id: str, kind: str = "latency") -> ExplanationPayload | None:
        rows = self.ex.query(f"SELECT payload FROM {self.t(_tables(kind)[1])} FINAL "
                             f"WHERE trace_id = {quote(str(trace_id).lower())} LIMIT 1")
        return cast(ExplanationPayload, json.loads(rows[0][0])) if rows else None

    def explanations_since(self, after_unix_nano: int, exclude_replica: str | None = None,
                           limit: int = 1000) -> list[tuple[str, int, ExplanationPayload]]:
        """(trace id, saved at, payload) of explanations saved after ``after_unix_nano`` (by replicas other than
        ``exclude_replica``), oldest first: what other replicas' ``WatchOutliers`` streams follow."""
        other = f" AND replica != {quote(exclude_replica)}" if exclude_replica is not None else ""
        both = " UNION ALL ".join(f"SELECT trace_id, created_unix_nano, payload, replica FROM {self.t(e)}"
                                  for _, e in _TABLES.values())
        rows = self.ex.query(f"SELECT trace_id, created_unix_nano, payload FROM ({both}) "
                             f"WHERE created_unix_nano > {int(after_unix_nano)}{other} "
                             f"ORDER BY created_unix_nano LIMIT {int(limit)}")
        return [(str(r[0]), int(r[1]), cast(ExplanationPayload, json.loads(r[2]))) for r in rows]

    def forget(self, trace_ids: Sequence[str]) -> int:
        """Delete the marks and explanations of these traces; returns how many rows went."""
        ids = sorted({str(t).lower() for t in trace_ids})
        gone = 0
        for k in range(0, len(ids), 5000):
            quoted = ",".join(quote(x) for x in ids[k:k + 5000])
            for table in _BY_TRACE:
                gone += int(self.ex.query(f"SELECT uniqExact(trace_id) FROM {self.t(table)} "
                                          f"WHERE trace_id IN ({quoted})")[0][0])
                self.ex.command(f"DELETE FROM {self.t(table)} WHERE trace_id IN ({quoted})")
        return gone + self._forget_regressions()

    def _forget_regressions(self) -> int:
        """Delete the regressions whose window's traces are all gone (ended before the oldest stored trace)."""
        cut = (f"ifNull((SELECT minOrNull(start_unix_nano) FROM {self.t('traces')}), "
               "toInt64(9223372036854775807))")
        gone = int(self.ex.query(f"SELECT uniqExact(key) FROM {self.t('regressions')} "
                                 f"WHERE to_unix_nano <= {cut}")[0][0])
        if gone:
            self.ex.command(f"DELETE FROM {self.t('regressions')} WHERE to_unix_nano <= {cut}")
        return gone

    # ---------------------------------------------------------------- regressions
    def save_regression(self, record: RegressionRecord) -> None:
        p = record.payload
        change = p.get("observed_change")
        self.ex.insert(
            self.t("regressions"),
            ("key", "source", "entry", "from_unix_nano", "to_unix_nano", "stat", "observed_change", "significant",
             "top_service", "summary", "payload", "replica", "created_unix_nano"),
            [(record.key, record.source, record.entry, int(record.from_unix_nano), int(record.to_unix_nano),
              str(p.get("stat", "")), float(change) if isinstance(change, (int, float)) else 0.0,
              int(bool(p.get("significant", record.source == "watch"))), record.top_service, record.summary,
              json.dumps(p, allow_nan=False, default=_json_default), self.replica, _version())])

    def regressions(self, entry: str | None = None, source: str | None = None, from_unix_nano: int | None = None,
                    to_unix_nano: int | None = None, limit: int | None = None) -> list[RegressionRecord]:
        given = ((f"entry = {quote(str(entry))}", entry), (f"source = {quote(str(source))}", source),
                 (f"to_unix_nano > {int(from_unix_nano or 0)}", from_unix_nano),  # the window overlaps [from, to)
                 (f"from_unix_nano < {int(to_unix_nano or 0)}", to_unix_nano))
        where = ["1", *(clause for clause, value in given if value is not None)]
        sql = (f"SELECT key, source, entry, from_unix_nano, to_unix_nano, payload, created_unix_nano "
               f"FROM {self.t('regressions')} FINAL WHERE {' AND '.join(where)} "
               "ORDER BY to_unix_nano DESC, created_unix_nano DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [RegressionRecord(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), json.loads(r[5]), int(r[6]))
                for r in self.ex.query(sql)]

    # ---------------------------------------------------------------- models
    def save_model(self, entry: str, blob: bytes, meta: Mapping[str, Any] | None = None) -> None:
        self.ex.insert(self.t("models"), ("entry", "blob", "meta", "replica", "saved_unix_nano"),
                       [(entry, base64.b64encode(bytes(blob)).decode("ascii"),
                         json.dumps(dict(meta or {}), default=_json_default), self.replica, _version())])

    def load_model(self, entry: str) -> tuple[bytes, dict[str, Any]] | None:
        rows = self.ex.query(f"SELECT blob, meta FROM {self.t('models')} FINAL WHERE entry = {quote(entry)} LIMIT 1")
        return None if not rows else (base64.b64decode(rows[0][0]), json.loads(rows[0][1]))

    def model_versions(self) -> dict[str, int]:
        """Entry point -> save time (ns) of its newest model: replicas poll it to load models others fitted."""
        return {str(e): int(v) for e, v in self.ex.query(
            f"SELECT entry, max(saved_unix_nano) FROM {self.t('models')} GROUP BY entry")}

    # ---------------------------------------------------------------- housekeeping
    def counts(self) -> dict[str, int]:
        """Rows (distinct keys) of ``outliers``, ``explanations`` and ``models``."""
        return {table: int(self.ex.query(f"SELECT uniqExact({key}) FROM {self.t(table)}")[0][0])
                for table, key in (*((t, "trace_id") for t in _BY_TRACE), ("models", "entry"), ("regressions", "key"))}

    def close(self) -> None:
        """Idempotent; the executor is the trace store's to close."""
        with self._lock:
            self._closed = True


_last_version = 0


def _version() -> int:
    """A strictly increasing nanosecond timestamp (the ReplacingMergeTree version: later writes win)."""
    global _last_version
    now = time.time_ns()
    _last_version = max(now, _last_version + 1)
    return _last_version


def open_clickhouse_stores(url: str, replica: str = "0", ttl_s: float = DEFAULT_TTL_S,
                           settle_s: float = 0.0) -> tuple[ClickHouseTraceStore, ClickHouseResultsStore]:
    """The trace store and the results store in the ClickHouse at ``url`` (``clickhouse://user@host:8123/db``
    or ``chdb:///dir?database=db``), sharing one connection, creating the database and tables on first start;
    the results follow the traces' retention. ``settle_s``: see :class:`ClickHouseTraceStore` (replicas)."""
    ex = connect(parse_target(url))
    traces = ClickHouseTraceStore(ex, replica=replica, ttl_s=ttl_s, settle_s=settle_s)
    results = ClickHouseResultsStore(ex, replica=replica, ttl_s=ttl_s)
    follow_retention(traces, results)
    return traces, results
