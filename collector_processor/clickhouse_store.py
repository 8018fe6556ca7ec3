"""The trace store in ClickHouse: assembled traces with their per-node features, call-graph evidence and the
ingest spool, in tables created on first start (a public schema: see README "ClickHouse store").

Several whyslow replicas may write one database: traces are keyed by trace id (``ReplacingMergeTree``, the
newest version wins, reads use ``FINAL``), graph evidence is summed (``SummingMergeTree``, reads aggregate),
and each replica keeps its own spool rows (``replica`` column). ClickHouse has no multi-table transactions, so
a batch is written traces first, graph evidence next, spool release last: a crash in between replays the
request, which re-stores the same trace (replaced, not duplicated; its graph evidence is counted twice, which
only weighs the structure vote). Retention: a TTL on every table counted from the time a row was written (so that replayed or back-filled old spans
are kept until :meth:`retention` applies the age by trace start with lightweight deletes).

All SQL goes through a :class:`collector_processor.sql_executor.SqlExecutor` (clickhouse-connect or chdb).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from collector_processor.feature_table import empty_feature_table, feature_table
from collector_processor.graph import build_call_graph
from collector_processor.records import (
    COUNT,
    ERR,
    FIRST,
    GAP,
    LAT,
    OWN,
    AnalysedBatch,
    CallGraph,
    NodeFeatures,
    TraceFeatures,
)
from collector_processor.sql_executor import SqlExecutor, ident, quote
from collector_processor.store import RETENTION_CHUNK

log = logging.getLogger("whyslow.store")

# beyond this many excluded trace ids, features() filters them after the query instead of in its SQL text
_EXCLUDE_IN_SQL = 2000

DEFAULT_TTL_S = 7 * 24 * 3600

TRACE_TABLES = ("traces", "graph_nodes", "graph_edges", "spool", "spool_released", "trace_parts", "fragments")
# columns added since the first release: a database created before gets them on open (rows stored before read
# them as their default, an empty array: callee_error is then derived from the call graph at read time)
ADDED_COLUMNS = (("traces", "callee_error", "Array(UInt8)"),)


def trace_schema(db: str, ttl_s: int = DEFAULT_TTL_S) -> list[str]:
    """CREATE statements of the trace store's tables in database ``db``."""
    d = ident(db)
    ttl = int(ttl_s)
    return [
        f"""CREATE TABLE IF NOT EXISTS {d}.traces (
    trace_id String,
    entry LowCardinality(String),
    start_unix_nano Int64,
    start_time DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano(start_unix_nano, 'UTC'),
    duration_ms Float64,
    complete UInt8,
    n_spans UInt32,
    replica LowCardinality(String),
    stored_unix_nano Int64,
    nodes Array(LowCardinality(String)),
    latency_ms Array(Float64),
    own_ms Array(Float64),
    gap_ms Array(Float64),
    calls Array(UInt32),
    error Array(UInt8),
    start_offset_ms Array(Float64),
    callee_error Array(UInt8),
    INDEX idx_entry entry TYPE set(1000) GRANULARITY 4,
    INDEX idx_start start_unix_nano TYPE minmax GRANULARITY 4
) ENGINE = ReplacingMergeTree(stored_unix_nano)
ORDER BY trace_id
TTL toDateTime(fromUnixTimestamp64Nano(stored_unix_nano, 'UTC')) + INTERVAL {ttl} SECOND""",
        f"""CREATE TABLE IF NOT EXISTS {d}.graph_nodes (
    entry LowCardinality(String),
    node LowCardinality(String),
    service LowCardinality(String),
    operation LowCardinality(String),
    kind LowCardinality(String),
    traces UInt64,
    overlapping UInt64,
    sequential UInt64,
    day Date DEFAULT today()
) ENGINE = SummingMergeTree((traces, overlapping, sequential))
ORDER BY (entry, node, service, operation, kind, day)
TTL day + INTERVAL {ttl} SECOND""",
        f"""CREATE TABLE IF NOT EXISTS {d}.graph_edges (
    entry LowCardinality(String),
    caller LowCardinality(String),
    callee LowCardinality(String),
    traces UInt64,
    day Date DEFAULT today()
) ENGINE = SummingMergeTree(traces)
ORDER BY (entry, caller, callee, day)
TTL day + INTERVAL {ttl} SECOND""",
        f"""CREATE TABLE IF NOT EXISTS {d}.spool (
    replica LowCardinality(String),
    id UInt64,
    received_time DateTime64(9, 'UTC') DEFAULT now64(9),
    payload String
) ENGINE = MergeTree
ORDER BY (replica, id)
TTL toDateTime(received_time) + INTERVAL {ttl} SECOND""",
        # which replicas stored part of a trace (one row per trace and replica, kept by merges that collapse the
        # versions of ``traces``): a trace with parts from two replicas arrived split (a resharding)
        f"""CREATE TABLE IF NOT EXISTS {d}.trace_parts (
    trace_id String,
    replica LowCardinality(String),
    n_spans UInt32,
    stored_unix_nano Int64
) ENGINE = ReplacingMergeTree(stored_unix_nano)
ORDER BY (trace_id, replica)
TTL toDateTime(fromUnixTimestamp64Nano(stored_unix_nano, 'UTC')) + INTERVAL {ttl} SECOND""",
        # the traces found split across replicas (small: only while the replica count changes); read as incomplete
        f"""CREATE TABLE IF NOT EXISTS {d}.fragments (
    trace_id String,
    replica LowCardinality(String),
    found_unix_nano Int64
) ENGINE = ReplacingMergeTree(found_unix_nano)
ORDER BY trace_id
TTL toDateTime(fromUnixTimestamp64Nano(found_unix_nano, 'UTC')) + INTERVAL {ttl} SECOND""",
        f"""CREATE TABLE IF NOT EXISTS {d}.spool_released (
    replica LowCardinality(String),
    id UInt64,
    released_time DateTime64(9, 'UTC') DEFAULT now64(9)
) ENGINE = MergeTree
ORDER BY (replica, id)
TTL toDateTime(released_time) + INTERVAL {ttl} SECOND""",
    ]


class ClickHouseTraceStore:
    """:class:`collector_processor.store.TraceStore` on ClickHouse (see the module docstring)."""

    def __init__(self, executor: SqlExecutor, replica: str = "0", ttl_s: float = DEFAULT_TTL_S,
                 settle_s: float = 0.0) -> None:
        self.ex = executor
        self.db = executor.database
        self.replica = str(replica)
        # several replicas: a trace stored less than settle_s ago may still turn out to be a fragment (its other
        # part not written yet by another replica), so it is not fitted on before then, and each write records
        # its parts in trace_parts; 0: one replica
        self.settle_s = float(settle_s)
        self._lock = threading.Lock()
        self._last_spool_id = 0
        self._closed = False
        self._delete_listeners: list[Callable[[Sequence[str]], object]] = []
        self.fragments: dict[str, None] = {}   # recent trace ids found split across replicas (insertion order)
        self.fragment_count = 0
        for stmt in trace_schema(self.db, int(ttl_s)):
            self.ex.command(stmt)
        for table, column, kind in ADDED_COLUMNS:
            self.ex.command(f"ALTER TABLE {self.t(table)} ADD COLUMN IF NOT EXISTS {ident(column)} {kind}")

    def t(self, table: str) -> str:
        """A table of this store's database, qualified."""
        return f"{ident(self.db)}.{ident(table)}"

    # ---------------------------------------------------------------- spool (pipeline)
    def spool_append(self, payload: bytes) -> int:
        """Keep one accepted request in ClickHouse until the traces it feeds are stored; returns its id."""
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            now = time.time_ns()
            sid = self._last_spool_id = max(now, self._last_spool_id + 1)
        self.ex.insert(self.t("spool"), ("replica", "id", "payload"),
                       [(self.replica, sid, base64.b64encode(payload).decode("ascii"))])
        return sid

    def spool_pending(self) -> Iterator[tuple[int, bytes]]:
        """This replica's spooled requests whose traces were not stored yet (oldest first)."""
        last = 0
        while True:
            rows = self.ex.query(
                f"SELECT id, payload FROM {self.t('spool')} WHERE replica = {quote(self.replica)} AND id > {last} "
                f"AND id NOT IN (SELECT id FROM {self.t('spool_released')} WHERE replica = {quote(self.replica)}) "
                "ORDER BY id LIMIT 256")
            if not rows:
                return
            for sid, payload in rows:
                yield int(sid), base64.b64decode(payload)
            last = int(rows[-1][0])
            self._last_spool_id = max(self._last_spool_id, last)

    def stored_span_counts(self, trace_ids: list[str]) -> dict[str, int]:
        """Span count of the version of each of these trace ids that this replica stored (the pipeline keeps a
        stored trace unless a rebuilt one holds more spans). Only this replica's: a part another replica stored
        is not an earlier version of this one but the other half of a split trace, which must be written (and
        found split) rather than skipped."""
        out: dict[str, int] = {}
        for k in range(0, len(trace_ids), 5000):
            chunk = ",".join(quote(t) for t in trace_ids[k:k + 5000])
            out.update((str(t), int(n)) for t, n in self.ex.query(
                f"SELECT trace_id, argMax(n_spans, stored_unix_nano) FROM {self.t('traces')} "
                f"WHERE trace_id IN ({chunk}) AND replica = {quote(self.replica)} GROUP BY trace_id"))
        return out

    # ---------------------------------------------------------------- writing (pipeline)
    def write_batch(self, batch: AnalysedBatch | None, release_spool: Iterable[int] = ()) -> int:
        """Store completed traces (features + graph evidence), then release their spool rows; returns how many
        of the traces were stored before (re-opened by late spans: the new version replaces them)."""
        release = [int(i) for i in release_spool]
        replaced = 0
        if batch is not None and len(batch):
            replaced = self._write(batch)
        if release:
            self.ex.insert(self.t("spool_released"), ("replica", "id"), [(self.replica, i) for i in release])
        return replaced

    def _write(self, b: AnalysedBatch) -> int:
        ids = b.trace_ids
        last: dict[str, int] = {}
        for k, tid in enumerate(ids):  # the same trace twice in one batch: the later one wins
            last[tid] = k
        replaced = 0
        foreign: set[str] = set()  # stored before by another replica: this write holds a fragment
        uniq = list(last)
        for k in range(0, len(uniq), 5000):
            chunk = uniq[k:k + 5000]
            for tid, replicas in self.ex.query(
                    f"SELECT trace_id, groupUniqArray(replica) FROM {self.t('traces')} "
                    f"WHERE trace_id IN ({','.join(quote(x) for x in chunk)}) GROUP BY trace_id"):
                replaced += 1
                if any(str(r) != self.replica for r in replicas):
                    foreign.add(str(tid))
        if foreign:
            self._mark_fragments(b, foreign)
        now = time.time_ns()
        if self.settle_s > 0:  # replicas: which of them stored part of each trace (one replica: nothing to split)
            self.ex.insert(self.t("trace_parts"), ("trace_id", "replica", "n_spans", "stored_unix_nano"),
                           [(tid, self.replica, int(b.n_spans[k]), now) for tid, k in last.items()])
        bounds = b.bounds()
        node_names = np.array(b.nodes, dtype=object)[b.f_node_idx]
        vals = b.values
        # empty per trace when not computed: read time derives it from the call graph
        callee = b.callee_error.astype(np.int64) if len(b.callee_error) == len(vals) else None
        start, dur, complete, nsp = b.start.tolist(), b.duration_ms.tolist(), b.complete.tolist(), b.n_spans.tolist()
        rows = []
        for k, tid in enumerate(ids):
            if last[tid] != k:
                continue
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            v = vals[lo:hi]
            rows.append((tid, b.entries[k], int(start[k]), float(dur[k]), int(complete[k]), int(nsp[k]),
                         self.replica, now, node_names[lo:hi].tolist(), v[:, LAT].tolist(), v[:, OWN].tolist(),
                         v[:, GAP].tolist(), v[:, COUNT].astype(np.int64).tolist(),
                         v[:, ERR].astype(np.int64).tolist(), v[:, FIRST].tolist(),
                         callee[lo:hi].tolist() if callee is not None else []))
        self.ex.insert(self.t("traces"), ("trace_id", "entry", "start_unix_nano", "duration_ms", "complete", "n_spans",
                                          "replica", "stored_unix_nano", "nodes", "latency_ms", "own_ms", "gap_ms",
                                          "calls", "error", "start_offset_ms", "callee_error"), rows)
        if b.graph_nodes:
            self.ex.insert(self.t("graph_nodes"), ("entry", "node", "service", "operation", "kind", "traces",
                                                   "overlapping", "sequential"),
                           [(e, nd, *b.node_info[nd], int(g[0]), int(g[1]), int(g[2]))
                            for (e, nd), g in b.graph_nodes.items()])
        if b.graph_edges:
            self.ex.insert(self.t("graph_edges"), ("entry", "caller", "callee", "traces"),
                           [(e, a, c, int(n)) for (e, a, c), n in b.graph_edges.items()])
        return replaced

    def _mark_fragments(self, b: AnalysedBatch, ids: set[str]) -> None:
        """Traces another replica stored part of before this write (a trace split across replicas when the
        collector's load balancer resharded): stored incomplete and reported incomplete to the pipeline's
        listeners (see :meth:`_record_fragments` for the rest)."""
        for k, tid in enumerate(b.trace_ids):
            if tid in ids:
                b.complete[k] = False
        self._record_fragments(ids)

    def _record_fragments(self, ids: Collection[str]) -> None:
        """Remember split traces: in ``fragments`` (read as incomplete by every replica, whichever version of
        ``traces`` wins, so never fitted on) and in :attr:`fragments` (recent ids, for this process's listeners)."""
        fresh = [t for t in ids if t not in self.fragments]
        if not fresh:
            return
        now = time.time_ns()
        self.ex.insert(self.t("fragments"), ("trace_id", "replica", "found_unix_nano"),
                       [(t, self.replica, now) for t in fresh])
        for tid in fresh:
            self.fragments[tid] = None
        while len(self.fragments) > 100_000:
            self.fragments.pop(next(iter(self.fragments)))
        self.fragment_count += len(fresh)
        log.warning("%d trace(s) arrived split across replicas; stored as incomplete, not scored nor explained",
                    len(fresh))

    def find_fragments(self, trace_ids: Collection[str]) -> set[str]:
        """Which of these traces (stored by this replica) another replica stored part of, or that are known
        split: recorded as fragments and returned. Replicas ask once a trace has settled (its other part, if any,
        has had the time to arrive at the other replica and be stored), before scoring it."""
        ids = sorted({str(t).lower() for t in trace_ids})
        found = {t for t in ids if t in self.fragments}
        rest = [t for t in ids if t not in found]
        me = quote(self.replica)
        for k in range(0, len(rest), 5000):
            chunk = ",".join(quote(x) for x in rest[k:k + 5000])
            found.update(str(r[0]) for r in self.ex.query(
                f"SELECT DISTINCT trace_id FROM {self.t('trace_parts')} WHERE trace_id IN ({chunk}) "
                f"AND replica != {me} UNION DISTINCT "
                f"SELECT DISTINCT trace_id FROM {self.t('fragments')} WHERE trace_id IN ({chunk})"))
        self._record_fragments(found)
        return found

    def is_fragment(self, trace_id: str) -> bool:
        """Whether a stored trace arrived split across replicas (parts from two, or recorded as a fragment)."""
        return bool(self.ex.query(f"SELECT {self._split_sql(str(trace_id).lower())}")[0][0])

    def _split_sql(self, trace_id: str) -> str:
        t = quote(trace_id)
        return (f"(SELECT uniqExact(replica) FROM {self.t('trace_parts')} WHERE trace_id = {t}) > 1 "
                f"OR {t} IN (SELECT trace_id FROM {self.t('fragments')})")

    # ---------------------------------------------------------------- reading (backend)
    def entry_points(self) -> list[str]:
        """Entry point node ids (root span types), most traces first."""
        rows = self.ex.query(f"SELECT entry, count() AS c FROM {self.t('traces')} FINAL GROUP BY entry "
                             "ORDER BY c DESC, entry")
        return [str(r[0]) for r in rows]

    def graph(self, entry: str) -> CallGraph:
        """The call graph learned for an entry point (empty when unknown); edges closing a cycle are dropped."""
        e = quote(entry)
        nodes = self.ex.query(
            f"SELECT node, any(service), any(operation), any(kind), sum(overlapping), sum(sequential) "
            f"FROM {self.t('graph_nodes')} WHERE entry = {e} GROUP BY node ORDER BY node")
        if not nodes:
            return CallGraph(entry=entry)
        edges = [(str(a), str(c)) for a, c, _ in self.ex.query(
            f"SELECT caller, callee, sum(traces) AS n FROM {self.t('graph_edges')} WHERE entry = {e} "
            "GROUP BY caller, callee ORDER BY n DESC, caller, callee")]
        traces = int(self.ex.query(f"SELECT count() FROM {self.t('traces')} FINAL WHERE entry = {e}")[0][0])
        return build_call_graph(entry, [(str(n), str(s), str(o), str(k), int(ov), int(sq))
                                        for n, s, o, k, ov, sq in nodes], edges, traces)

    def features(self, entry: str, since_unix_nano: int | None = None, until_unix_nano: int | None = None,
                 limit: int | None = None, exclude: Collection[str] = (),
                 complete_only: bool = False, value: str = "latency") -> pd.DataFrame:
        """Wide per-trace latencies (ms) of the entry point's nodes (0 where a node was not called), index
        ``trace_id``, plus ``__start_unix_nano`` and ``__duration_ms``; oldest first; ``limit`` keeps the newest
        of the traces not in ``exclude``. ClickHouse pivots: each row's latencies come back in the graph's
        column order. ``value="error"``: each node's count of failed spans instead of its latency;
        ``value="count"``: its number of spans (calls per request)."""
        array = {"latency": "latency_ms", "error": "error", "count": "calls"}.get(value)
        if array is None:
            raise ValueError(f"value must be one of latency, error, count, not {value!r}")
        cg = self.graph(entry)
        columns = list(cg.nodes)
        if not columns:
            return empty_feature_table(columns)
        where = [f"entry = {quote(entry)}"]
        if since_unix_nano is not None:
            where.append(f"start_unix_nano >= {int(since_unix_nano)}")
        if until_unix_nano is not None:
            where.append(f"start_unix_nano < {int(until_unix_nano)}")
        if complete_only:  # and not split across replicas, and (replicas) settled: see settle_s
            where.append(f"complete = 1 AND trace_id NOT IN (SELECT trace_id FROM {self.t('fragments')})")
            if self.settle_s > 0:
                where.append(f"stored_unix_nano <= {time.time_ns() - int(self.settle_s * 1e9)}")
        excluded = {str(t).lower() for t in exclude}
        late_filter = len(excluded) > _EXCLUDE_IN_SQL
        if excluded and not late_filter:
            where.append(f"trace_id NOT IN ({','.join(quote(t) for t in sorted(excluded))})")
        sql = (f"SELECT trace_id, start_unix_nano AS s, duration_ms, "
               f"arrayMap(c -> toFloat64({array}[indexOf(nodes, c)]), {quote(columns)}) "
               f"FROM {self.t('traces')} FINAL WHERE {' AND '.join(where)} ORDER BY s DESC, trace_id DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit) + (len(excluded) if late_filter else 0)}"
        rows = self.ex.query(sql)
        if late_filter:
            rows = [r for r in rows if r[0] not in excluded][:limit]
        if not rows:
            return empty_feature_table(columns)
        rows.reverse()
        mat = np.array([r[3] for r in rows], dtype=float).reshape(len(rows), len(columns))
        return feature_table(mat, columns, [str(r[0]) for r in rows], [int(r[1]) for r in rows],
                             [float(r[2]) for r in rows])

    def trace_features(self, trace_id: str) -> TraceFeatures | None:
        """All stored features of one trace, or None when it is unknown."""
        tid = str(trace_id).lower()
        rows = self.ex.query(
            f"SELECT entry, start_unix_nano, duration_ms, complete AND NOT ({self._split_sql(tid)}), n_spans, nodes, "
            f"latency_ms, own_ms, gap_ms, calls, error, start_offset_ms, callee_error FROM {self.t('traces')} FINAL "
            f"WHERE trace_id = {quote(tid)} LIMIT 1")
        if not rows:
            return None
        entry, start, dur, complete, nsp, nodes, lat, own, gap, calls, err, first, callee = rows[0]
        tf = TraceFeatures(trace_id=tid, entry=str(entry), start_unix_nano=int(start), duration_ms=float(dur),
                           complete=bool(complete), n_spans=int(nsp))
        stored = len(callee) == len(nodes) and len(nodes) > 0
        for k in sorted(range(len(nodes)), key=lambda i: nodes[i]):
            tf.nodes[str(nodes[k])] = NodeFeatures(float(lat[k]), float(own[k]), float(gap[k]), int(calls[k]),
                                                   bool(err[k]), float(first[k]), int(err[k]),
                                                   bool(callee[k]) if stored else False)
        if not stored and any(f.error for f in tf.nodes.values()):  # stored before the column existed
            tf.mark_callee_errors(self.graph(tf.entry).call_edges)
        return tf

    # ---------------------------------------------------------------- housekeeping
    def retention(self, max_age_s: float | None = None, max_rows: int | None = None) -> int:
        """Delete traces older than ``max_age_s`` (by start time) and beyond the newest ``max_rows`` (lightweight
        deletes; the tables' TTL drops old data on its own too); returns how many traces were deleted."""
        conds = []
        if max_age_s is not None:
            cutoff = time.time_ns() - int(max_age_s * 1e9)
            conds.append(f"start_unix_nano < {cutoff}")
        if max_rows is not None:
            n = int(self.ex.query(f"SELECT count() FROM {self.t('traces')} FINAL")[0][0])
            if n > max_rows:
                keep = self.ex.query(
                    f"SELECT start_unix_nano AS s, trace_id FROM {self.t('traces')} FINAL "
                    f"ORDER BY s DESC, trace_id DESC LIMIT 1 OFFSET {max(int(max_rows), 1) - 1}")
                if max_rows <= 0:
                    conds.append("1")
                elif keep:
                    s, tid = int(keep[0][0]), str(keep[0][1])
                    conds.append(f"(start_unix_nano, trace_id) < ({s}, {quote(tid)})")
        if not conds:
            return 0
        where = " OR ".join(f"({c})" for c in conds)
        total = 0
        before: set[str] = set()
        while True:  # RETENTION_CHUNK traces at a time: memory stays bounded however far the table outgrew max_rows
            doomed = [str(r[0]) for r in self.ex.query(
                f"SELECT trace_id FROM {self.t('traces')} FINAL WHERE {where} LIMIT {RETENTION_CHUNK}")]
            doomed = [x for x in doomed if x not in before]  # the previous chunk's deletes not visible yet: done
            if not doomed:
                return total
            before = set(doomed)
            for k in range(0, len(doomed), 5000):
                ids = ",".join(quote(x) for x in doomed[k:k + 5000])
                for table in ("traces", "trace_parts", "fragments"):
                    self.ex.command(f"DELETE FROM {self.t(table)} WHERE trace_id IN ({ids})")
            for listener in list(self._delete_listeners):
                listener(doomed)
            total += len(doomed)
            if len(doomed) < RETENTION_CHUNK:
                return total

    def on_delete(self, listener: Callable[[Sequence[str]], object]) -> None:
        """Register ``listener(trace_ids)``, called after retention deleted those traces."""
        self._delete_listeners.append(listener)

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for stats and tests)."""
        q = self.ex.query
        r = self.replica
        traces = int(q(f"SELECT count() FROM {self.t('traces')} FINAL")[0][0])
        return {
            "traces": traces,
            "trace_nodes": traces,
            "graph_nodes": int(q(f"SELECT uniqExact(entry, node) FROM {self.t('graph_nodes')}")[0][0]),
            "graph_edges": int(q(f"SELECT uniqExact(entry, caller, callee) FROM {self.t('graph_edges')}")[0][0]),
            "spool": int(q(f"SELECT count() FROM {self.t('spool')} WHERE replica = {quote(r)} AND id NOT IN "
                           f"(SELECT id FROM {self.t('spool_released')} WHERE replica = {quote(r)})")[0][0]),
        }

    def close(self) -> None:
        """Close the executor (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        ex, self.ex = self.ex, _Closed(self.db)
        ex.close()


class _Closed:
    """The executor of a closed store: every statement raises."""

    def __init__(self, database: str) -> None:
        self.database = database

    def command(self, sql: str) -> None:
        raise RuntimeError("store is closed")

    def query(self, sql: str) -> list[tuple]:
        raise RuntimeError("store is closed")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        raise RuntimeError("store is closed")

    def close(self) -> None:
        pass
