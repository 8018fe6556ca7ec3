"""The SQLite results store: outlier marks, explanations and models in their own tables of the collector's
database file (``<data_dir>/whyslow.sqlite3``), through their own connections.

Same file, so :meth:`SqliteResultsStore.outliers` joins the marks with the collector's ``traces`` and ``nodes``
tables (the one place this module reads the collector's schema). The table names are the ones earlier versions
kept in the collector's store, so an existing data directory keeps its results. Retention: the trace store calls
:meth:`SqliteResultsStore.forget` after deleting traces (``plugin.results_store.follow_retention``); opening the
store also forgets the results of traces that are gone (a crash between the two deletions).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from collector_processor.sqlite_store import DB_FILE, SYNCHRONOUS, connect
from plugin.payloads import ExplanationPayload
from plugin.results_store import OutlierMark, RegressionRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outliers (
    trace_id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    marked_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS explanations (
    trace_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    created_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS error_outliers (
    trace_id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    marked_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS error_explanations (
    trace_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    created_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS regressions (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    entry TEXT NOT NULL,
    from_unix_nano INTEGER NOT NULL,
    to_unix_nano INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_unix_nano INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS regressions_by_window ON regressions (to_unix_nano);
CREATE TABLE IF NOT EXISTS models (
    entry TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    meta TEXT NOT NULL,
    saved_unix_nano INTEGER NOT NULL);
"""
_BY_TRACE = ("outliers", "explanations", "error_outliers", "error_explanations")  # rows die with their trace
# kind -> (marks table, explanations table): slow traces keep the tables earlier versions used
_TABLES = {"latency": ("outliers", "explanations"), "error": ("error_outliers", "error_explanations")}


# a regression goes when every trace of its window is gone (older than the oldest stored trace, or none left)
_FORGET_REGRESSIONS = ("DELETE FROM regressions WHERE to_unix_nano <= "
                       "COALESCE((SELECT MIN(start_unix_nano) FROM traces), 9223372036854775807)")


def _regression_filter(entry: str | None, source: str | None, from_unix_nano: int | None,
                       to_unix_nano: int | None) -> tuple[list[str], list[object]]:
    """WHERE clauses and their arguments: a window overlaps [from, to) when it ends after from and starts before to."""
    given = [(clause, value) for clause, value in (
        ("entry = ?", entry), ("source = ?", source), ("to_unix_nano > ?", from_unix_nano),
        ("from_unix_nano < ?", to_unix_nano)) if value is not None]
    return ["1=1", *(c for c, _ in given)], [v if isinstance(v, str) else int(v) for _, v in given]


def _tables(kind: str) -> tuple[str, str]:
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(_TABLES)}, not {kind!r}") from None


class SqliteResultsStore:
    """The SQLite implementation of :class:`plugin.results_store.ResultsStore` (thread-safe: one writer
    connection under a lock, one reader connection per thread)."""

    def __init__(self, data_dir: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILE
        self._synchronous = synchronous.upper()
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._w = connect(self.path, self._synchronous)
        self._w.executescript(_SCHEMA)
        self._forget_orphans()

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("results store is closed")
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = connect(self.path, self._synchronous)
            con.execute("PRAGMA query_only=1")
            self._local.con = con
            with self._lock:
                self._readers.append(con)
        return con

    def _write(self, sql: str, args: Sequence[Any]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("results store is closed")
            self._w.execute(sql, args)

    def _has_traces(self) -> bool:
        return self._w.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'traces'").fetchone() \
            is not None

    def _forget_orphans(self) -> None:
        """Delete the results of traces that are no longer stored (when the trace tables exist)."""
        if not self._has_traces():
            return
        with self._lock:
            for table in _BY_TRACE:
                self._w.execute(f"DELETE FROM {table} WHERE trace_id NOT IN (SELECT trace_id FROM traces)")
            self._w.execute(_FORGET_REGRESSIONS)

    # --- outliers and explanations ----------------------------------------------------------------
    def mark_outlier(self, trace_id: str, score: float, kind: str = "latency") -> None:
        self._write(f"INSERT INTO {_tables(kind)[0]} VALUES (?,?,?) ON CONFLICT(trace_id) DO UPDATE SET "
                    "score = excluded.score, marked_unix_nano = excluded.marked_unix_nano",
                    (str(trace_id).lower(), float(score), time.time_ns()))

    def outliers(self, from_unix_nano: int | None = None, to_unix_nano: int | None = None,
                 entry: str | None = None, min_score: float | None = None,
                 limit: int | None = None, kind: str | None = None) -> list[OutlierMark]:
        """Marked outliers (joined with their trace), newest first; ``kind`` None: both kinds."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if from_unix_nano is not None:
            where.append("t.start_unix_nano >= ?")
            args.append(int(from_unix_nano))
        if to_unix_nano is not None:
            where.append("t.start_unix_nano < ?")
            args.append(int(to_unix_nano))
        if entry is not None:
            where.append("n.node = ?")
            args.append(entry)
        if min_score is not None:
            where.append("o.score >= ?")
            args.append(float(min_score))
        kinds = list(_TABLES) if kind is None else [kind]
        marks = " UNION ALL ".join(f"SELECT trace_id, score, '{k}' AS kind FROM {_tables(k)[0]}" for k in kinds)
        sql = ("SELECT o.trace_id, o.score, n.node, t.start_unix_nano, t.duration_ms, o.kind "
               f"FROM ({marks}) o JOIN traces t ON t.trace_id = o.trace_id JOIN nodes n ON n.id = t.entry_id "
               f"WHERE {' AND '.join(where)} ORDER BY t.start_unix_nano DESC, o.kind DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [OutlierMark(r[0], float(r[1]), r[2], int(r[3]), float(r[4]), r[5])
                for r in self._reader().execute(sql, args)]

    def outlier_ids(self, entry: str | None = None) -> set[str]:
        """Ids of the traces marked as outliers of either kind (left out of the training rows)."""
        out: set[str] = set()
        for marks, _ in _TABLES.values():
            if entry is None:
                rows = self._reader().execute(f"SELECT trace_id FROM {marks}")
            else:
                rows = self._reader().execute(  # from the (few) marks to their traces, not the other way round
                    f"SELECT o.trace_id FROM {marks} o CROSS JOIN traces t ON t.trace_id = o.trace_id "
                    "WHERE t.entry_id = (SELECT id FROM nodes WHERE node = ?)", (entry,))
            out.update(r[0] for r in rows)
        return out

    def save_explanation(self, trace_id: str, payload: ExplanationPayload) -> None:
        text = json.dumps(payload, allow_nan=False, default=_json_default)
        table = _tables(str(payload.get("kind", "latency")))[1]
        self._write(f"INSERT INTO {table} VALUES (?,?,?) ON CONFLICT(trace_id) DO UPDATE SET "
                    "payload = excluded.payload, created_unix_nano = excluded.created_unix_nano",
                    (str(trace_id).lower(), text, time.time_ns()))

    def explanation(self, trace_id: str, kind: str = "latency") -> ExplanationPayload | None:
        row = self._reader().execute(f"SELECT payload FROM {_tables(kind)[1]} WHERE trace_id = ?",
                                     (str(trace_id).lower(),)).fetchone()
        return None if row is None else cast(ExplanationPayload, json.loads(row[0]))

    def forget(self, trace_ids: Sequence[str]) -> int:
        ids = [(str(t).lower(),) for t in trace_ids]
        if not ids:
            return 0
        with self._lock:
            if self._closed:
                raise RuntimeError("results store is closed")
            w = self._w
            w.execute("BEGIN IMMEDIATE")
            try:
                gone = sum(w.executemany(f"DELETE FROM {t} WHERE trace_id = ?", ids).rowcount for t in _BY_TRACE)
                if self._has_traces():
                    gone += w.execute(_FORGET_REGRESSIONS).rowcount
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
        return int(gone)

    # --- regressions ------------------------------------------------------------------------------
    def save_regression(self, record: RegressionRecord) -> None:
        text = json.dumps(record.payload, allow_nan=False, default=_json_default)
        self._write("INSERT INTO regressions VALUES (?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                    "source = excluded.source, entry = excluded.entry, from_unix_nano = excluded.from_unix_nano, "
                    "to_unix_nano = excluded.to_unix_nano, payload = excluded.payload, "
                    "created_unix_nano = excluded.created_unix_nano",
                    (record.key, record.source, record.entry, int(record.from_unix_nano), int(record.to_unix_nano),
                     text, time.time_ns()))

    def regressions(self, entry: str | None = None, source: str | None = None, from_unix_nano: int | None = None,
                    to_unix_nano: int | None = None, limit: int | None = None) -> list[RegressionRecord]:
        where, args = _regression_filter(entry, source, from_unix_nano, to_unix_nano)
        sql = ("SELECT key, source, entry, from_unix_nano, to_unix_nano, payload, created_unix_nano FROM regressions "
               f"WHERE {' AND '.join(where)} ORDER BY to_unix_nano DESC, created_unix_nano DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [RegressionRecord(r[0], r[1], r[2], int(r[3]), int(r[4]), json.loads(r[5]), int(r[6]))
                for r in self._reader().execute(sql, args)]

    # --- models -----------------------------------------------------------------------------------
    def save_model(self, entry: str, blob: bytes, meta: Mapping[str, Any] | None = None) -> None:
        self._write("INSERT INTO models VALUES (?,?,?,?) ON CONFLICT(entry) DO UPDATE SET blob = excluded.blob, "
                    "meta = excluded.meta, saved_unix_nano = excluded.saved_unix_nano",
                    (entry, bytes(blob), json.dumps(dict(meta or {}), default=_json_default), time.time_ns()))

    def load_model(self, entry: str) -> tuple[bytes, dict[str, Any]] | None:
        row = self._reader().execute("SELECT blob, meta FROM models WHERE entry = ?", (entry,)).fetchone()
        return None if row is None else (bytes(row[0]), json.loads(row[1]))

    # --- housekeeping -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        con = self._reader()
        return {t: int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in (*_BY_TRACE, "models", "regressions")}

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for con in self._readers:
                try:
                    con.close()
                except sqlite3.ProgrammingError:
                    pass  # a reader created in another thread; sqlite closes it when that thread's object dies
            self._w.close()


def _json_default(o: object) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def open_results_store(data_dir: str | Path, synchronous: str = "NORMAL") -> SqliteResultsStore:
    """Open (creating its tables if needed) the SQLite results store in ``data_dir``."""
    return SqliteResultsStore(data_dir, synchronous=synchronous)
