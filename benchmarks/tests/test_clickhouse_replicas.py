"""The scale-out benchmark's own helpers: the readiness and idleness it waits for, the CPU clock it reads, and
the two phases it writes to otel_traces (chdb in process, as in the benchmark)."""

from __future__ import annotations

import os
import time

from benchmarks import clickhouse_replicas as bench

NS = 1_000_000_000


def test_model_ready_needs_a_model_and_every_model_ready() -> None:
    assert not bench.model_ready({"models": []})
    assert not bench.model_ready({"models": [{"entry": "a", "state": "ready"}, {"entry": "b", "state": "learning"}]})
    assert bench.model_ready({"models": [{"entry": "a", "state": "ready"}]})


def test_idle_waits_for_settling_and_pending() -> None:
    assert bench.idle({"replica": None, "detector": {"pending": 0}})
    assert not bench.idle({"replica": {"settling": 3}, "detector": {"pending": 0}})
    assert not bench.idle({"replica": {"settling": 0}, "detector": {"pending": 1}})


def test_cpu_seconds_follows_the_process_clock() -> None:
    before = bench.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    spent = bench.cpu_seconds(os.getpid()) - before
    assert 0.2 <= spent <= 2.0


def test_phases_write_every_span_and_mark_one_request_in_ten_slow() -> None:
    from collector_processor.sql_executor import connect
    from tests.support.chdb import chdb_path  # chdb runs one data directory per process: share the suite's

    path = chdb_path()
    url = "clickhouse://127.0.0.1:1/benchtest"  # only its database name is used: the phases write to chdb directly
    ex = connect(f"chdb://{path}?database=benchtest")
    start = time.time_ns()
    learn = bench.write_phase(url, path, 20, start - 150 * NS, seed=1, slow_every=None)
    measured = bench.write_phase(url, path, 30, start, seed=2, slow_every=bench.SLOW_EVERY)
    assert learn.slow == set() and len(measured.slow) == 3
    rows = ex.query("SELECT TraceId, count(), min(Timestamp) FROM benchtest.otel_traces GROUP BY TraceId")
    assert len(rows) == 50 and sum(int(r[1]) for r in rows) == learn.spans + measured.spans
    assert measured.slow <= {str(r[0]) for r in rows}
    # the measured phase is a burst (1,000 requests/s): its 30 requests start within a fraction of a second
    burst = ex.query(f"SELECT max(s) - min(s) FROM (SELECT min(Timestamp) AS s FROM benchtest.otel_traces "
                     f"WHERE Timestamp >= fromUnixTimestamp64Nano({start}) GROUP BY TraceId)")
    assert float(burst[0][0]) < 1.0
