"""Embedded durable trace store: SQLite in WAL mode in the data dir (stdlib sqlite3, no server).

The collector owns the tables created here (spool, nodes, traces, trace_nodes, graph_nodes, graph_edges). Other
parts may keep their own tables in the same database file, through their own connections (:func:`connect`).

One writer connection guarded by a lock (all writes are short transactions, batched with executemany);
readers use one connection per thread, which WAL lets run concurrently with the writer.

Durability: the pipeline spools every accepted OTLP request before the client is answered: the bytes are
appended to a segment file (``<data_dir>/spool/seg-N.bin``) and indexed by a row of the ``spool`` table; the
row is deleted (in a store transaction after the writes of its traces) once every trace it fed is stored and
final (see assembly.py), and a segment file is removed
once none of its rows is left. After a restart the pipeline replays what is left. (Blobs in SQLite cost a
page write to the WAL, another at checkpoint and a page free at delete: ~15 % of the pipeline's time; the
append-only files cost a sequential write.) With ``synchronous=NORMAL`` (default) a committed transaction and
an appended request survive a process crash; ``synchronous="FULL"`` (fsync of each append and commit) also
survives power loss, at a speed cost.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
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
from collector_processor.store import RETENTION_CHUNK

DB_FILE = "whyslow.sqlite3"
SPOOL_DIR = "spool"
SEGMENT_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_unix_nano INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS traces (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL UNIQUE,
    entry_id INTEGER NOT NULL,
    start_unix_nano INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    complete INTEGER NOT NULL,
    n_spans INTEGER NOT NULL,
    stored_unix_nano INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS traces_entry_start ON traces(entry_id, start_unix_nano);
CREATE INDEX IF NOT EXISTS traces_start ON traces(start_unix_nano);
CREATE TABLE IF NOT EXISTS trace_nodes (
    trace_row INTEGER PRIMARY KEY,
    node_ids BLOB NOT NULL,
    feature_values BLOB NOT NULL,
    callee_error BLOB);
CREATE TABLE IF NOT EXISTS graph_nodes (
    entry_id INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind TEXT NOT NULL,
    traces INTEGER NOT NULL,
    overlapping INTEGER NOT NULL,
    sequential INTEGER NOT NULL,
    PRIMARY KEY (entry_id, node_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS graph_edges (
    entry_id INTEGER NOT NULL,
    caller_id INTEGER NOT NULL,
    callee_id INTEGER NOT NULL,
    traces INTEGER NOT NULL,
    PRIMARY KEY (entry_id, caller_id, callee_id)) WITHOUT ROWID;
"""
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def connect(path: str | Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection to the whyslow database file in WAL mode (autocommit; callers open their transactions)."""
    if synchronous.upper() not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous.upper()}")
    con.execute("PRAGMA wal_autocheckpoint=16384")  # checkpoint every ~64 MB of WAL, not every 4 MB
    con.execute("PRAGMA busy_timeout=30000")
    return con


_VALUE_COLUMNS = {"latency": LAT, "error": ERR, "count": COUNT}  # features(value=...)
# columns added since the first release: (table, column, type); a database file written before gets them on open
_ADDED_COLUMNS = (("trace_nodes", "callee_error", "BLOB"),)


def _add_missing_columns(con: sqlite3.Connection) -> None:
    """Migrate an older database file: add the columns its tables lack (NULL in the rows stored before)."""
    for table, column, kind in _ADDED_COLUMNS:
        have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class SqliteStore:
    """The SQLite implementation of :class:`collector_processor.store.TraceStore`."""

    def __init__(self, data_dir: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private(self.data_dir, 0o700)  # traces, models and explanations are nobody else's business
        self.path = self.data_dir / DB_FILE
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite's -wal/-shm copy its mode
        _private(self.path, 0o600)
        self._synchronous = synchronous.upper()
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._delete_listeners: list[Callable[[Sequence[str]], object]] = []
        self._w = self._connect()
        self._w.executescript(_SCHEMA)
        _add_missing_columns(self._w)
        self._node_ids: dict[str, int] = dict(
            (n, i) for i, n in self._w.execute("SELECT id, node FROM nodes"))
        self._next_trace_row = (self._w.execute("SELECT COALESCE(MAX(id), 0) FROM traces").fetchone()[0]) + 1
        # spool segments: id -> segment of every pending request, live rows per segment
        self._spool_dir = self.data_dir / SPOOL_DIR
        self._spool_dir.mkdir(exist_ok=True, mode=0o700)
        self._spool_seg: dict[int, int] = dict(self._w.execute("SELECT id, segment FROM spool").fetchall())
        self._seg_live: dict[int, int] = {}
        for seg in self._spool_seg.values():
            self._seg_live[seg] = self._seg_live.get(seg, 0) + 1
        existing = [int(p.stem.split("-")[1]) for p in self._spool_dir.glob("seg-*.bin")]
        for seg in existing:  # segments nothing points to any more (their release was the last thing done)
            if seg not in self._seg_live:
                self._segment_path(seg).unlink(missing_ok=True)
        self._seg = max(existing, default=0) + 1
        self._seg_file: Any = None
        self._seg_size = 0

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, self._synchronous)

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("store is closed")
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only=1")
            self._local.con = con
            with self._lock:
                self._readers.append(con)
        return con

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state (WAL snapshot)."""
        con = self._reader()
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            con.execute("BEGIN")
        self._local.depth = depth + 1
        try:
            yield con
        finally:
            self._local.depth = depth
            if depth == 0:
                con.execute("COMMIT")

    # ---------------------------------------------------------------- writing (pipeline)
    def _node_id(self, node: str) -> int:
        """Interned id of a node name (call with the writer lock held, inside a transaction)."""
        i = self._node_ids.get(node)
        if i is None:
            i = self._w.execute("INSERT INTO nodes(node) VALUES (?) ON CONFLICT(node) DO UPDATE SET node=node "
                                "RETURNING id", (node,)).fetchone()[0]
            self._node_ids[node] = i
        return i

    def _segment_path(self, seg: int) -> Path:
        return self._spool_dir / f"seg-{seg:08d}.bin"

    def spool_append(self, payload: bytes) -> int:
        """Durably keep one accepted request until the traces it feeds are stored; returns its spool id."""
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            if self._seg_file is None or self._seg_size >= SEGMENT_BYTES:
                if self._seg_file is not None:
                    self._seg_file.close()
                    self._seg_file = None
                    self._gc_segment(self._seg)
                    self._seg += 1
                self._seg_file = open(self._segment_path(self._seg), "ab", buffering=0,  # noqa: SIM115
                                      opener=lambda p, flags: os.open(p, flags, 0o600))
                self._seg_size = self._seg_file.tell()
            offset = self._seg_size
            self._seg_file.write(payload)
            self._seg_size += len(payload)
            if self._synchronous in ("FULL", "EXTRA"):
                os.fsync(self._seg_file.fileno())
            cur = self._w.execute("INSERT INTO spool(received_unix_nano, segment, offset, length) VALUES (?,?,?,?)",
                                  (time.time_ns(), self._seg, offset, len(payload)))
            sid = int(cur.lastrowid or 0)  # always set by an INSERT into a rowid table
            self._spool_seg[sid] = self._seg
            self._seg_live[self._seg] = self._seg_live.get(self._seg, 0) + 1
            return sid

    def _gc_segment(self, seg: int) -> None:
        """Remove a finished segment file once no spool row points into it (writer lock held)."""
        if self._seg_live.get(seg, 0) <= 0 and (seg != self._seg or self._seg_file is None):
            self._seg_live.pop(seg, None)
            self._segment_path(seg).unlink(missing_ok=True)

    def spool_pending(self) -> Iterator[tuple[int, bytes]]:
        """Spooled requests whose traces were not stored yet (replayed after a restart); a request whose bytes
        are missing (segment file lost) is skipped."""
        con = self._reader()
        last = 0
        files: dict[int, Any] = {}
        try:
            while True:
                rows = con.execute("SELECT id, segment, offset, length FROM spool WHERE id > ? ORDER BY id LIMIT 256",
                                   (last,)).fetchall()
                if not rows:
                    return
                for i, seg, off, ln in rows:
                    f = files.get(seg)
                    if f is None:
                        try:
                            f = files[seg] = open(self._segment_path(seg), "rb")  # noqa: SIM115
                        except FileNotFoundError:
                            continue
                    f.seek(off)
                    data = f.read(ln)
                    if len(data) == ln:
                        yield int(i), data
                last = rows[-1][0]
        finally:
            for f in files.values():
                f.close()

    def stored_span_counts(self, trace_ids: list[str]) -> dict[str, int]:
        """Span count of each of these trace ids that is stored (committed), for the pipeline's rule that a
        rebuilt trace replaces its stored version only when it holds more spans."""
        out: dict[str, int] = {}
        with self._lock:
            if self._closed:
                return out
            for k in range(0, len(trace_ids), 500):
                chunk = trace_ids[k:k + 500]
                out.update(self._w.execute(
                    f"SELECT trace_id, n_spans FROM traces WHERE trace_id IN ({','.join('?' * len(chunk))})",
                    chunk).fetchall())
        return out

    def write_batch(self, batch: AnalysedBatch | None, release_spool: Iterable[int] = ()) -> int:
        """Store a batch of completed traces (features + graph evidence) and release their spool rows in one
        transaction. A trace id stored before (re-opened by late spans) is replaced; returns how many were."""
        release = [(int(i),) for i in release_spool]
        if (batch is None or not len(batch)) and not release:
            return 0
        now = time.time_ns()
        replaced = 0
        with self._lock:
            w = self._w
            w.execute("BEGIN IMMEDIATE")
            try:
                row = self._next_trace_row
                if batch is not None and len(batch):
                    row, replaced = self._write(w, batch, row, now)
                if release:
                    w.executemany("DELETE FROM spool WHERE id = ?", release)
                w.execute("COMMIT")
                self._next_trace_row = row
                touched = set()
                for (i,) in release:
                    seg = self._spool_seg.pop(i, None)
                    if seg is not None:
                        self._seg_live[seg] -= 1
                        touched.add(seg)
                for seg in touched:
                    if seg != self._seg:
                        self._gc_segment(seg)
                return replaced
            except BaseException:
                w.execute("ROLLBACK")
                self._node_ids = dict((n, i) for i, n in self._w.execute("SELECT id, node FROM nodes"))
                raise

    def _write(self, w: sqlite3.Connection, b: AnalysedBatch, row: int, now: int) -> tuple[int, int]:
        ids = b.trace_ids
        last: dict[str, int] = {}
        for k, t in enumerate(ids):  # the same trace twice in one batch: the later one wins
            last[t] = k
        old = []
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            old += w.execute(f"SELECT id FROM traces WHERE trace_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        if old:
            w.executemany("DELETE FROM trace_nodes WHERE trace_row = ?", old)
            w.executemany("DELETE FROM traces WHERE id = ?", old)
        node_id = self._node_id
        nid = np.array([node_id(n) for n in b.nodes], dtype=np.int32)[b.f_node_idx]
        bounds = b.bounds()
        vals = b.values
        # one byte per node beside node_ids (NULL: not computed; read time derives it from the call graph)
        callee = b.callee_error.astype(np.uint8) if len(b.callee_error) == len(vals) else None
        trace_rows = []
        blob_rows = []
        start, dur, complete, nsp = b.start.tolist(), b.duration_ms.tolist(), b.complete.tolist(), b.n_spans.tolist()
        for k, t in enumerate(ids):
            if last[t] != k:
                continue
            lo, hi = bounds[k], bounds[k + 1]
            trace_rows.append((row, t, node_id(b.entries[k]), start[k], dur[k], int(complete[k]), nsp[k], now))
            blob_rows.append((row, nid[lo:hi].tobytes(), vals[lo:hi].tobytes(),
                              callee[lo:hi].tobytes() if callee is not None else None))
            row += 1
        w.executemany("INSERT INTO traces VALUES (?,?,?,?,?,?,?,?)", trace_rows)
        w.executemany("INSERT INTO trace_nodes(trace_row, node_ids, feature_values, callee_error) VALUES (?,?,?,?)",
                      blob_rows)
        w.executemany(
            "INSERT INTO graph_nodes VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(entry_id, node_id) DO UPDATE SET "
            "traces = traces + excluded.traces, overlapping = overlapping + excluded.overlapping, "
            "sequential = sequential + excluded.sequential",
            [(node_id(e), node_id(nd), *b.node_info[nd], g[0], g[1], g[2]) for (e, nd), g in b.graph_nodes.items()])
        w.executemany(
            "INSERT INTO graph_edges VALUES (?,?,?,?) ON CONFLICT(entry_id, caller_id, callee_id) "
            "DO UPDATE SET traces = traces + excluded.traces",
            [(node_id(e), node_id(a), node_id(c), cnt) for (e, a, c), cnt in b.graph_edges.items()])
        return row, len(old)

    # ---------------------------------------------------------------- reading (backend)
    def _entry_id(self, con: sqlite3.Connection, entry: str) -> int | None:
        row = con.execute("SELECT id FROM nodes WHERE node = ?", (entry,)).fetchone()
        return None if row is None else int(row[0])

    def entry_points(self) -> list[str]:
        """Entry point node ids (root span types), most traces first."""
        con = self._reader()
        rows = con.execute("SELECT n.node, COUNT(*) c FROM traces t JOIN nodes n ON n.id = t.entry_id "
                           "GROUP BY t.entry_id ORDER BY c DESC, n.node").fetchall()
        return [r[0] for r in rows]

    def graph(self, entry: str) -> CallGraph:
        """The call graph learned for an entry point (empty when unknown). Edges closing a cycle between span
        types (recursive calls) are dropped so that the causal graph stays acyclic."""
        with self._snapshot() as con:
            return self._graph(con, entry)

    def _graph(self, con: sqlite3.Connection, entry: str) -> CallGraph:
        eid = self._entry_id(con, entry)
        if eid is None:
            return CallGraph(entry=entry)
        names = dict(con.execute("SELECT n.id, n.node FROM graph_nodes g JOIN nodes n ON n.id = g.node_id "
                                 "WHERE g.entry_id = ?", (eid,)).fetchall())
        edges = [(names[a], names[b]) for a, b in con.execute(
            "SELECT caller_id, callee_id FROM graph_edges WHERE entry_id = ? ORDER BY traces DESC, caller_id, callee_id",
            (eid,))]
        nodes = [(names[nid], svc, op, kind, over, seq) for nid, svc, op, kind, over, seq in con.execute(
            "SELECT node_id, service, operation, kind, overlapping, sequential FROM graph_nodes "
            "WHERE entry_id = ? ORDER BY node_id", (eid,))]
        traces = int(con.execute("SELECT COUNT(*) FROM traces WHERE entry_id = ?", (eid,)).fetchone()[0])
        return build_call_graph(entry, nodes, edges, traces)

    def features(self, entry: str, since_unix_nano: int | None = None, until_unix_nano: int | None = None,
                 limit: int | None = None, exclude: Collection[str] = (),
                 complete_only: bool = False, value: str = "latency") -> pd.DataFrame:
        """Wide per-trace latencies (ms) of the entry point's nodes (0 where a node was not called), index
        ``trace_id``, plus ``__start_unix_nano`` and ``__duration_ms``; oldest first; ``limit`` keeps the newest
        of the traces not in ``exclude`` (trace ids). ``value="error"``: each node's count of failed spans
        instead of its latency (> 0: the node failed; the failure model's table); ``value="count"``: its number of
        spans (calls per request; the regression's call structure)."""
        column = _VALUE_COLUMNS.get(value)
        if column is None:
            raise ValueError(f"value must be one of {', '.join(_VALUE_COLUMNS)}, not {value!r}")
        with self._snapshot() as con:
            return self._features(con, entry, since_unix_nano, until_unix_nano, limit, exclude, complete_only,
                                  column)

    def _features(self, con: sqlite3.Connection, entry: str, since_unix_nano: int | None,
                  until_unix_nano: int | None, limit: int | None, exclude: Collection[str],
                  complete_only: bool, column: int = LAT) -> pd.DataFrame:
        cg = self._graph(con, entry)
        columns = list(cg.nodes)
        eid = self._entry_id(con, entry)
        if eid is None:
            return empty_feature_table(columns)
        where = ["t.entry_id = ?"]
        args: list[Any] = [eid]
        if since_unix_nano is not None:
            where.append("t.start_unix_nano >= ?")
            args.append(int(since_unix_nano))
        if until_unix_nano is not None:
            where.append("t.start_unix_nano < ?")
            args.append(int(until_unix_nano))
        if complete_only:
            where.append("t.complete = 1")
        sel = (f"SELECT t.id, t.trace_id, t.start_unix_nano, t.duration_ms FROM traces t WHERE {' AND '.join(where)} "
               "ORDER BY t.start_unix_nano DESC, t.id DESC")
        if exclude:  # newest first, skipping the excluded ids, until `limit` are kept; their blobs by row id
            traces = _newest_kept(con.execute(sel, args), {str(t).lower() for t in exclude}, limit)
            blobs_sql = ("SELECT f.trace_row, f.node_ids, f.feature_values FROM trace_nodes f "
                         "WHERE f.trace_row IN (SELECT value FROM json_each(?))")
            blobs_args: list[Any] = [json.dumps([t[0] for t in traces])]
        else:
            if limit is not None:
                sel += f" LIMIT {int(limit)}"
            traces = con.execute(sel, args).fetchall()
            blobs_sql = (f"SELECT f.trace_row, f.node_ids, f.feature_values FROM trace_nodes f JOIN ({sel}) t "
                         "ON t.id = f.trace_row")
            blobs_args = args
        if not traces:
            return empty_feature_table(columns)
        traces.reverse()
        col_ids = np.array([self._node_name_to_id(con, c) for c in columns], dtype=np.int64)
        lut = np.full(int(max(col_ids.max(initial=0), 0)) + 1, -1, dtype=np.int64)
        ok = col_ids >= 0
        lut[col_ids[ok]] = np.flatnonzero(ok)
        mat = np.zeros((len(traces), len(columns)), dtype=float)
        row_of = {t[0]: k for k, t in enumerate(traces)}
        for trace_row, ids_blob, vals_blob in con.execute(blobs_sql, blobs_args):
            ids = np.frombuffer(ids_blob, dtype=np.int32)
            lat = np.frombuffer(vals_blob, dtype=np.float64).reshape(-1, 6)[:, column]
            inside = ids < len(lut)
            cols = np.full(len(ids), -1, dtype=np.int64)
            cols[inside] = lut[ids[inside]]
            keep = cols >= 0
            mat[row_of[trace_row], cols[keep]] = lat[keep]
        return feature_table(mat, columns, [t[1] for t in traces], [t[2] for t in traces], [t[3] for t in traces])

    def _node_name_to_id(self, con: sqlite3.Connection, node: str) -> int:
        i = self._node_ids.get(node)
        if i is None:
            row = con.execute("SELECT id FROM nodes WHERE node = ?", (node,)).fetchone()
            i = -1 if row is None else int(row[0])
        return i

    def trace_features(self, trace_id: str) -> TraceFeatures | None:
        """All stored features of one trace, or None when it is unknown."""
        with self._snapshot() as con:
            return self._trace_features(con, trace_id)

    def _trace_features(self, con: sqlite3.Connection, trace_id: str) -> TraceFeatures | None:
        t = con.execute("SELECT t.id, n.node, t.start_unix_nano, t.duration_ms, t.complete, t.n_spans FROM traces t "
                        "JOIN nodes n ON n.id = t.entry_id WHERE t.trace_id = ?", (str(trace_id).lower(),)).fetchone()
        if t is None:
            return None
        tf = TraceFeatures(trace_id=str(trace_id).lower(), entry=t[1], start_unix_nano=int(t[2]),
                           duration_ms=float(t[3]), complete=bool(t[4]), n_spans=int(t[5]))
        blob = con.execute("SELECT node_ids, feature_values, callee_error FROM trace_nodes WHERE trace_row = ?",
                           (t[0],)).fetchone()
        if blob is not None:
            ids = np.frombuffer(blob[0], dtype=np.int32).tolist()
            vals = np.frombuffer(blob[1], dtype=np.float64).reshape(-1, 6).tolist()
            callee = [False] * len(ids) if blob[2] is None else np.frombuffer(blob[2], dtype=np.uint8).astype(bool).tolist()
            names = dict(con.execute(f"SELECT id, node FROM nodes WHERE id IN ({','.join('?' * len(ids))})",
                                     ids).fetchall()) if ids else {}
            for i, v, c in sorted(zip(ids, vals, callee, strict=True), key=lambda x: names[x[0]]):
                tf.nodes[names[i]] = NodeFeatures(v[LAT], v[OWN], v[GAP], int(v[COUNT]), bool(v[ERR]), v[FIRST],
                                                  int(v[ERR]), bool(c))
            if blob[2] is None and any(f.error for f in tf.nodes.values()):  # stored before the column existed
                tf.mark_callee_errors(self._graph(con, tf.entry).call_edges)
        return tf

    def retention(self, max_age_s: float | None = None, max_rows: int | None = None,
                  chunk: int | None = None) -> int:
        """Delete traces (with their features) older than ``max_age_s`` (by start time) and beyond the newest
        ``max_rows``; the delete listeners hear which trace ids went. Returns how many traces were deleted.

        Deleted ``chunk`` (default RETENTION_CHUNK) traces per transaction, the writer lock released in between: ingest goes on while a
        large backlog goes (a store that outgrew ``max_rows`` by millions), and memory stays bounded by a chunk."""
        conds: list[str] = []
        args: list[int] = []
        if max_age_s is not None:
            conds.append("start_unix_nano < ?")
            args.append(time.time_ns() - int(max_age_s * 1e9))
        if max_rows is not None:
            if max_rows <= 0:
                conds.append("1")
            else:  # the oldest trace kept: everything ordered before it goes
                keep = self._reader().execute("SELECT start_unix_nano, id FROM traces ORDER BY start_unix_nano DESC, "
                                              "id DESC LIMIT 1 OFFSET ?", (int(max_rows) - 1,)).fetchone()
                if keep is not None:
                    conds.append("(start_unix_nano < ? OR (start_unix_nano = ? AND id < ?))")
                    args += [int(keep[0]), int(keep[0]), int(keep[1])]
        if not conds:
            return 0
        select = f"SELECT id, trace_id FROM traces WHERE {' OR '.join(conds)} LIMIT ?"
        chunk = max(1, int(chunk or RETENTION_CHUNK))
        total = 0
        while True:
            with self._lock:
                w = self._w
                w.execute("BEGIN IMMEDIATE")
                try:
                    doomed = w.execute(select, (*args, chunk)).fetchall()
                    w.executemany("DELETE FROM trace_nodes WHERE trace_row = ?", [(d[0],) for d in doomed])
                    w.executemany("DELETE FROM traces WHERE id = ?", [(d[0],) for d in doomed])
                    w.execute("COMMIT")
                except BaseException:
                    w.execute("ROLLBACK")
                    raise
                listeners = list(self._delete_listeners)
            if doomed:
                total += len(doomed)
                ids = [d[1] for d in doomed]
                for listener in listeners:
                    listener(ids)
            if len(doomed) < chunk:
                return total

    def on_delete(self, listener: Callable[[Sequence[str]], object]) -> None:
        """Call ``listener(trace_ids)`` after retention deleted those traces (the results stored about them
        follow: see ``plugin.sqlite_results``)."""
        with self._lock:
            self._delete_listeners.append(listener)

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for stats and tests)."""
        con = self._reader()
        return {t: int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("traces", "trace_nodes", "graph_nodes", "graph_edges", "spool")}

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._seg_file is not None:
                self._seg_file.close()
                self._seg_file = None
                self._gc_segment(self._seg)
            for con in self._readers:
                try:
                    con.close()
                except sqlite3.ProgrammingError:
                    pass  # a reader created in another thread; sqlite closes it when that thread's object dies
            self._w.close()


def _private(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` when we own it (an operator's shared mount may not allow it: left as is)."""
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except OSError:
        pass


def _newest_kept(cursor: sqlite3.Cursor, skip: set[str], limit: int | None) -> list[Any]:
    """Rows (newest first, ``row[1]`` the trace id) not in ``skip``, at most ``limit`` of them; reads no further."""
    kept: list[Any] = []
    try:
        for row in cursor:
            if row[1] not in skip:
                kept.append(row)
                if limit is not None and len(kept) >= limit:
                    break
    finally:
        cursor.close()
    return kept


def open_store(data_dir: str | Path, synchronous: str = "NORMAL") -> SqliteStore:
    """Open (creating if needed) the SQLite store in ``data_dir``."""
    return SqliteStore(data_dir, synchronous=synchronous)
