"""One in-process ClickHouse engine (chdb) per test process, a fresh database per test.

chdb runs one data directory per process, so every test that needs ClickHouse shares this one; tests stay
apart by database name. Skips with a reason when chdb is not installed (``make test`` installs it)."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile

import pytest

_PATH: str | None = None
_N = itertools.count(1)


def chdb_path() -> str:
    """The process's chdb data directory (created on first use)."""
    global _PATH
    pytest.importorskip("chdb", reason="chdb (in-process ClickHouse) is not installed: pip install -e '.[dev]'")
    if _PATH is None:
        _PATH = tempfile.mkdtemp(prefix="whyslow-chdb-")
        atexit.register(_remove, _PATH)
    return _PATH


def _remove(path: str) -> None:
    """At exit: stop the HTTP front and close the engine before its files go (chdb's own shutdown, after this,
    must not find its tables deleted under it)."""
    from collector_processor.sql_executor import close_chdb_sessions

    if _FRONT is not None:
        _FRONT.stop()
    close_chdb_sessions()
    shutil.rmtree(path, ignore_errors=True)


def fresh_url() -> str:
    """A ``chdb://`` store URL with a database nobody used before in this process."""
    return f"chdb://{chdb_path()}?database=t{os.getpid()}_{next(_N)}"


_FRONT = None


def http_front_url() -> str:
    """A ``clickhouse://`` URL (fresh database) served by the process's test-only HTTP front for chdb, so that
    clickhouse-connect (the production executor) and other processes reach the same engine."""
    global _FRONT
    from benchmarks.dev.chdb_http import ChdbHttpFront

    if _FRONT is None:
        _FRONT = ChdbHttpFront(chdb_path()).start()
    return f"{_FRONT.url}/t{os.getpid()}_{next(_N)}"
