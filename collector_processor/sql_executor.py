"""One seam for ClickHouse SQL: clickhouse-connect against a server in production, the in-process engine
(``chdb``) in tests and for single-node use; both run the same SQL text.

Values are rendered into the SQL text by :func:`quote` (ClickHouse literal syntax), so a statement is one
string whatever runs it. Results come back as lists of tuples of plain Python values (int, float, str, list,
dict); blobs travel base64-encoded in ``String`` columns so that no executor has to guess an encoding.

    ex = connect("clickhouse://default@127.0.0.1:8123/whyslow")   # or "chdb:///var/lib/whyslow/ch?database=db"
    ex.command("CREATE TABLE ...")
    rows = ex.query(f"SELECT a, b FROM t WHERE c = {quote('x')}")
    ex.insert("t", ("a", "b"), [(1, "x"), (2, "y")])
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

_IDENT_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class SqlError(RuntimeError):
    """A statement failed (the server's message, without a traceback)."""


class SqlExecutor(Protocol):
    """Runs ClickHouse SQL. ``database`` is the default database of unqualified table names."""

    database: str

    def command(self, sql: str) -> None: ...
    def query(self, sql: str) -> list[tuple]: ...
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...
    def close(self) -> None: ...


def ident(name: str) -> str:
    """A backquoted identifier (database, table, column); only letters, digits and underscores are allowed."""
    if not name or not set(name) <= _IDENT_OK:
        raise ValueError(f"invalid ClickHouse identifier {name!r} (letters, digits and _ only)")
    return f"`{name}`"


def quote(value: Any, in_values: bool = False) -> str:
    """A ClickHouse literal for a Python value (None, bool, int, float, str, bytes, list/tuple, dict).
    ``in_values``: the form of the VALUES data format, parsed without evaluating expressions (a map is
    ``{'k':'v'}`` there, ``map('k','v')`` in a statement)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        out = value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
        return "'" + out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(quote(v, in_values) for v in value) + "]"
    if isinstance(value, dict):
        if in_values:
            return "{" + ",".join(f"{quote(k, True)}:{quote(v, True)}" for k, v in value.items()) + "}"
        return "map(" + ",".join(f"{quote(k)},{quote(v)}" for k, v in value.items()) + ")"
    if hasattr(value, "item"):  # numpy scalar
        return quote(value.item(), in_values)
    raise TypeError(f"cannot render {type(value).__name__} as a ClickHouse literal")


def values_sql(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``INSERT INTO table (cols) VALUES (...), ...`` with every value rendered by :func:`quote`."""
    cols = ", ".join(".".join(ident(p) for p in c.split(".")) for c in columns)  # Nested columns: a.b
    body = ",".join("(" + ",".join(quote(v, True) for v in row) + ")" for row in rows)
    return f"INSERT INTO {table} ({cols}) VALUES {body}"


@dataclass(frozen=True)
class Target:
    """A parsed store URL."""

    scheme: str          # "clickhouse" (HTTP interface, clickhouse-connect) or "chdb" (in-process)
    host: str = "127.0.0.1"
    port: int = 8123
    user: str = "default"
    password: str = ""
    database: str = "whyslow"
    path: str = ""       # chdb: data directory
    secure: bool = False

    def redacted(self) -> str:
        if self.scheme == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_target(url: str) -> Target:
    """``clickhouse://user:password@host:8123/db`` (``clickhouses://`` for TLS, port 8443) or
    ``chdb:///data/dir?database=db``; raises ValueError with a one-line reason."""
    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "chdb":
        path = unquote(parsed.netloc + parsed.path)
        if not path:
            raise ValueError("a chdb store needs a data directory: chdb:///path/to/dir")
        db = query.get("database", "whyslow")
        ident(db)
        return Target("chdb", path=path, database=db)
    if parsed.scheme not in ("clickhouse", "clickhouses"):
        raise ValueError(f"store URL must start with clickhouse://, clickhouses:// or chdb://, got {url!r}")
    if not parsed.hostname:
        raise ValueError(f"store URL {url!r} names no host")
    secure = parsed.scheme == "clickhouses"
    try:
        port = parsed.port or (8443 if secure else 8123)
    except ValueError:
        raise ValueError(f"store URL {url!r} has an invalid port") from None
    db = parsed.path.strip("/") or "whyslow"
    ident(db)
    # a password in the URL, else CLICKHOUSE_PASSWORD (ClickHouse's own variable; Kubernetes fills it from a Secret)
    password = unquote(parsed.password or "") or os.environ.get("CLICKHOUSE_PASSWORD", "")
    return Target("clickhouse", host=parsed.hostname, port=port, user=unquote(parsed.username or "default"),
                  password=password, database=db, secure=secure)


class HttpExecutor:
    """clickhouse-connect over ClickHouse's HTTP interface (production)."""

    def __init__(self, target: Target, connect_timeout: float = 10.0, send_receive_timeout: float = 300.0) -> None:
        import clickhouse_connect

        self.database = target.database
        try:
            self._client = clickhouse_connect.get_client(
                host=target.host, port=target.port, username=target.user, password=target.password,
                secure=target.secure, connect_timeout=connect_timeout, send_receive_timeout=send_receive_timeout,
                compress=False, autogenerate_session_id=False)
            self._client.command(f"CREATE DATABASE IF NOT EXISTS {ident(self.database)}")
        except Exception as exc:  # noqa: BLE001 - the client raises several families; one clear message
            raise SqlError(f"cannot reach ClickHouse at {target.redacted()}: {_first_line(exc)}") from None
        self._client.database = self.database

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:  # noqa: BLE001
            raise SqlError(_first_line(exc)) from None

    def query(self, sql: str) -> list[tuple]:
        try:
            return [tuple(r) for r in self._client.query(sql).result_rows]
        except Exception as exc:  # noqa: BLE001
            raise SqlError(_first_line(exc)) from None

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            self._client.insert(table, [list(r) for r in rows], column_names=list(columns))
        except Exception as exc:  # noqa: BLE001
            raise SqlError(_first_line(exc)) from None

    def close(self) -> None:
        self._client.close()


_CHDB_LOCK = threading.Lock()
_CHDB_SESSIONS: dict[str, Any] = {}
_CHDB_RUN_LOCK = threading.Lock()


def chdb_session(path: str) -> Any:
    """The process's chdb session on ``path`` (chdb allows one data directory per process; shared)."""
    from chdb import session

    with _CHDB_LOCK:
        s = _CHDB_SESSIONS.get(path)
        if s is None:
            if _CHDB_SESSIONS:
                other = next(iter(_CHDB_SESSIONS))
                raise SqlError(f"chdb already runs on {other} in this process; one data directory per process")
            s = _CHDB_SESSIONS[path] = session.Session(path)
        return s


def close_chdb_sessions() -> None:
    """Close the process's chdb session (before its data directory is removed); later use opens a new one."""
    with _CHDB_LOCK, _CHDB_RUN_LOCK:
        for s in _CHDB_SESSIONS.values():
            s.close()
        _CHDB_SESSIONS.clear()


class ChdbExecutor:
    """The ClickHouse engine in-process (chdb): tests, and a single-node deployment without a server. Statements
    name their tables with the database (``db.table``); the session's current database is never relied on."""

    def __init__(self, target: Target) -> None:
        self.database = target.database
        self._session = chdb_session(target.path)
        self._lock = _CHDB_RUN_LOCK   # one statement at a time through the process's session
        self.command(f"CREATE DATABASE IF NOT EXISTS {ident(self.database)}")

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        with self._lock:
            try:
                return self._session.query(sql, fmt)
            except Exception as exc:  # noqa: BLE001 - chdb raises its own error type
                raise SqlError(_first_line(exc)) from None

    def command(self, sql: str) -> None:
        self._run(sql)

    def query(self, sql: str) -> list[tuple]:
        res = self._run(sql, "JSONCompactEachRow")
        data = res.bytes()
        return [tuple(json.loads(line)) for line in data.splitlines() if line]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._run(values_sql(table, columns, rows))

    def close(self) -> None:
        """The session stays open for the process (chdb holds one per process)."""


def connect(url: str | Target) -> SqlExecutor:
    """An executor for a store URL (see :func:`parse_target`)."""
    target = parse_target(url) if isinstance(url, str) else url
    if target.scheme == "chdb":
        return ChdbExecutor(target)
    return HttpExecutor(target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
