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
from plugin.results_store import OutlierMark

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outliers (
    trace_id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    marked_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS explanations (
    trace_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    created_unix_nano INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    entry TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    meta TEXT NOT NULL,
    saved_unix_nano INTEGER NOT NULL);
"""
_BY_TRACE = ("outliers", "explanations")  # the tables whose rows die with their trace


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

    def _forget_orphans(self) -> None:
        """Delete the results of traces that are no longer stored (when the trace tables exist)."""
        if self._w.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'traces'").fetchone() is None:
            return
        with self._lock:
            for table in _BY_TRACE:
                self._w.execute(f"DELETE FROM {table} WHERE trace_id NOT IN (SELECT trace_id FROM traces)")

    # --- outliers and explanations ----------------------------------------------------------------
    def mark_outlier(self, trace_id: str, score: float) -> None:
        self._write("INSERT INTO outliers VALUES (?,?,?) ON CONFLICT(trace_id) DO UPDATE SET "
                    "score = excluded.score, marked_unix_nano = excluded.marked_unix_nano",
                    (str(trace_id).lower(), float(score), time.time_ns()))

    def outliers(self, from_unix_nano: int | None = None, to_unix_nano: int | None = None,
                 entry: str | None = None, min_score: float | None = None,
                 limit: int | None = None) -> list[OutlierMark]:
        """Marked outliers (joined with their trace), newest first."""
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
        sql = ("SELECT o.trace_id, o.score, n.node, t.start_unix_nano, t.duration_ms FROM outliers o "
               "JOIN traces t ON t.trace_id = o.trace_id JOIN nodes n ON n.id = t.entry_id "
               f"WHERE {' AND '.join(where)} ORDER BY t.start_unix_nano DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [OutlierMark(r[0], float(r[1]), r[2], int(r[3]), float(r[4])) for r in self._reader().execute(sql, args)]

    def outlier_ids(self, entry: str | None = None) -> set[str]:
        if entry is None:
            rows = self._reader().execute("SELECT trace_id FROM outliers")
        else:
            rows = self._reader().execute(  # from the (few) marks to their traces, not the other way round
                "SELECT o.trace_id FROM outliers o CROSS JOIN traces t ON t.trace_id = o.trace_id "
                "WHERE t.entry_id = (SELECT id FROM nodes WHERE node = ?)", (entry,))
        return {r[0] for r in rows}

    def save_explanation(self, trace_id: str, payload: ExplanationPayload) -> None:
        text = json.dumps(payload, allow_nan=False, default=_json_default)
        self._write("INSERT INTO explanations VALUES (?,?,?) ON CONFLICT(trace_id) DO UPDATE SET "
                    "payload = excluded.payload, created_unix_nano = excluded.created_unix_nano",
                    (str(trace_id).lower(), text, time.time_ns()))

    def explanation(self, trace_id: str) -> ExplanationPayload | None:
        row = self._reader().execute("SELECT payload FROM explanations WHERE trace_id = ?",
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
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
        return int(gone)

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
        return {t: int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in (*_BY_TRACE, "models")}

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
