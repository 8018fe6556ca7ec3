"""Replicas on one ClickHouse: two `whyslow serve` processes on loopback read the demo's spans from
otel_traces (pull mode, each its cityHash64 share) into one ClickHouse store, reached through the test-only
HTTP front for chdb (clickhouse-connect, the production client, speaks to it). They split the traffic, one
replica fits the model and the others adopt it, every outlier is explained exactly once, any replica answers
for any trace, and a replica killed with SIGKILL and restarted loses no span it had read (spool + cursor)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from benchmarks.dev.otel_clickhouse import ClickHouseSpanExporter
from collector_processor.sql_executor import connect, parse_target
from plugin.demo.faults import resolve_fault
from plugin.demo.otlp_export import SpanSender
from plugin.demo.simulator import Simulator
from plugin.demo.site import retail_site
from plugin.replicas import ReplicaShare
from tests.support.chdb import chdb_path, http_front_url
from tests.support.serve import ServeProcess, wait_until

NS = 1_000_000_000
N = 2
ENTRY = "website:GET /product/{id}"


def _replica(tmp_path, i: int, store: str, otel: str) -> ServeProcess:
    return ServeProcess(tmp_path / f"r{i}", store=store, source="clickhouse", source_url=otel, replica=f"{i}/{N}",
                        source_lag_s=8, source_window_s=30, source_backfill_s=120, min_traces=150,
                        trace_timeout_s=0.5, refit_interval_s=86400, log_level="info")


def _status(r: ServeProcess) -> dict:
    code, body = r.get("/api/v1/status")
    assert code == 200, body
    return body


@pytest.mark.slow
def test_replicas_share_the_work(tmp_path):
    store_url, otel_url = http_front_url(), http_front_url()
    # the app's spans go into otel_traces through the same engine (in this process)
    otel = connect(f"chdb://{chdb_path()}?database={parse_target(otel_url).database}")
    store = connect(f"chdb://{chdb_path()}?database={parse_target(store_url).database}")
    site = retail_site()
    exporter = ClickHouseSpanExporter(otel)
    sender = SpanSender(site, exporter, seed=11)
    sim = Simulator(site, seed=11, rate=20.0)

    def send(n: int, fault=None) -> list[str]:
        traces = sim.generate(n, time.time_ns(), fault)  # stamped when written: within the lag of the readers
        ids = sender.record(traces)
        sender.flush()
        return ids

    normal = send(300)
    replicas = [_replica(tmp_path, i, store_url, otel_url).start(timeout=90) for i in range(N)]
    try:
        owner = ReplicaShare(0, N).owner(ENTRY)
        # every replica gets the model: the owner fits it on all replicas' traces, the others adopt it
        for r in replicas:
            r.wait_for(lambda r=r: any(m["state"] == "ready" for m in _status(r)["models"]), timeout=120)
        assert {row[0] for row in store.query(f"SELECT replica FROM {store.database}.models")} == {str(owner)}
        faulty = send(12, resolve_fault(site, "caching-service"))
        # SIGKILL one replica while it works, then start it again on the same store
        victim = replicas[(owner + 1) % N]
        more = send(60)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        victim.proc = None
        victim._logfile.close()
        restarted = _replica(tmp_path, (owner + 1) % N, store_url, otel_url)
        replicas[(owner + 1) % N] = restarted.start(timeout=90)
        everything = set(normal) | set(faulty) | set(more)
        traces_table = f"{store.database}.traces"
        wait_until(lambda: int(store.query(f"SELECT uniqExact(trace_id) FROM {traces_table}")[0][0])
                   == len(everything), timeout=120)
        # nothing lost: every span the app wrote is stored exactly once, in complete traces
        stored = store.query(f"SELECT count(), sum(n_spans), min(complete) FROM {traces_table} FINAL")[0]
        assert (int(stored[0]), int(stored[1]), int(stored[2])) == (len(everything), exporter.rows, 1)
        # the replicas split the traffic
        by_replica = dict(store.query(f"SELECT replica, count() FROM {traces_table} FINAL GROUP BY replica"))
        assert set(by_replica) == {str(i) for i in range(N)} and all(v > 0 for v in by_replica.values())

        def explained() -> dict[str, int]:
            rows = store.query(f"SELECT trace_id, count() FROM {store.database}.explanations GROUP BY trace_id")
            return {str(t): int(c) for t, c in rows}

        # every stored trace has settled (replicas hold each one settle_s before scoring it) and been scored
        wait_until(lambda: set(faulty) & set(explained()), timeout=120)
        wait_until(lambda: all(_status(r)["replica"]["settling"] == 0 and _status(r)["detector"]["pending"] == 0
                               for r in replicas), timeout=120)
        done = explained()
        assert done and max(done.values()) == 1  # each outlier explained exactly once, by one replica
        caught = set(faulty) & set(done)
        assert len(caught) >= len(faulty) // 2
        # any replica answers for any trace, with the same explanation
        for trace_id in sorted(caught)[:3]:
            answers = [r.get(f"/api/v1/traces/{trace_id}/rca")[1] for r in replicas]
            tops = {a["contributions"][0]["service"] for a in answers}
            assert tops == {"caching-service"}, tops
        # the outliers list (read from the shared store) is the same on every replica
        outliers = [{o["trace_id"] for o in r.get("/api/v1/outliers?limit=1000")[1]["outliers"]} for r in replicas]
        assert all(o == outliers[0] for o in outliers) and outliers[0] >= caught, (outliers, done)
    finally:
        for r in replicas:
            r.stop()
