"""Scale-out throughput: `whyslow serve` replicas pulling the demo's spans from ``otel_traces`` into one
ClickHouse store, with 1 and 2 replicas, next to one replica pulling into the SQLite default.

The ClickHouse engine is chdb in this process, served to the replica processes by the development HTTP front (benchmarks/dev/chdb_http.py)
(clickhouse-connect, the production client, talks to it); the spans of ``--traces`` retail-app requests (the
last 10 % with a slow caching service) are written to ``otel_traces`` first, stamped over the past minutes, and
every replica back-fills them. Measured from the store: spans/s from the first replica ready until every trace
is stored, and explanations/s between the first and the last explanation saved. On this shared 2-core machine
the replicas, the HTTP front and chdb compete for the same cores, so 2 replicas show the overhead of sharing,
not the speed-up of 2 machines; docs/SCALING.md sizes a real deployment from the per-replica figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import ROOT, command_line, markdown_table, write_result

NS = 1_000_000_000
TRACE_TIMEOUT_S = 0.5


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(data_dir: Path, **settings: object) -> tuple[subprocess.Popen[bytes], str]:
    http = _free_port()
    cmd = [sys.executable, "-m", "plugin.cli", "serve", "--data-dir", str(data_dir), "--http", f"127.0.0.1:{http}"]
    for name in ("otlp_grpc", "otlp_http", "grpc"):
        cmd += ["--" + name.replace("_", "-"), f"127.0.0.1:{_free_port()}"]
    for k, v in settings.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "serve.log", "ab")  # noqa: SIM115 - the process owns it until it exits
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {(data_dir / 'serve.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("serve not ready")


def _wait(check, timeout: float) -> float:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.2)
    raise TimeoutError("benchmark condition not met")


def _idle(url: str) -> bool:
    """Whether a replica has nothing settling (replicas only) and nothing queued for scoring or explaining."""
    import json

    with urllib.request.urlopen(url + "/api/v1/status", timeout=10) as r:
        status = json.load(r)
    return int((status.get("replica") or {}).get("settling", 0)) == 0 and int(status["detector"]["pending"]) == 0


def run_case(replicas: int, store: str, otel_url: str, n_traces: int, tmp: Path, chdb_dir: str) -> dict[str, float]:
    """Start the replicas, wait until every trace is stored and explained; rates from the store's clock."""
    from collector_processor.sql_executor import connect, parse_target

    settings = dict(source="clickhouse", source_url=otel_url, source_lag_s=30, source_window_s=30,
                    source_backfill_s=3600, min_traces=200, window=2000, refit_interval_s=86400,
                    trace_timeout_s=TRACE_TIMEOUT_S, log_level="warning")
    procs = []
    sqlite_dir = tmp / f"sqlite-{replicas}"
    try:
        t0 = time.monotonic()
        for i in range(replicas):
            extra = {"store": store, "replica": f"{i}/{replicas}"} if store != "sqlite" else {}
            procs.append(_serve(tmp / f"r{replicas}-{i}" if store != "sqlite" else sqlite_dir, **settings, **extra))
        ready = time.monotonic()
        if store == "sqlite":
            import sqlite3

            def stored() -> int:
                con = sqlite3.connect(sqlite_dir / "whyslow.sqlite3")
                try:
                    return int(con.execute("SELECT COUNT(*), 1 FROM traces").fetchone()[0])
                finally:
                    con.close()

            def explained() -> tuple[int, int, int]:
                con = sqlite3.connect(sqlite_dir / "whyslow.sqlite3")
                try:
                    row = con.execute("SELECT COUNT(*), MIN(created_unix_nano), MAX(created_unix_nano) "
                                      "FROM explanations").fetchone()
                    return int(row[0]), int(row[1] or 0), int(row[2] or 0)
                finally:
                    con.close()
        else:
            ex = connect(f"chdb://{chdb_dir}?database={parse_target(store).database}")

            def stored() -> int:
                return int(ex.query(f"SELECT uniqExact(trace_id) FROM {ex.database}.traces")[0][0])

            def explained() -> tuple[int, int, int]:
                r = ex.query(f"SELECT uniqExact(trace_id), min(created_unix_nano), max(created_unix_nano) "
                             f"FROM {ex.database}.explanations")[0]
                return int(r[0]), int(r[1] or 0), int(r[2] or 0)

        done = _wait(lambda: stored() >= n_traces, timeout=900)
        # replicas (N > 1) score each stored trace settle_s after storing it: wait until none is settling or
        # queued, so that the explanations counted below are all there are
        _wait(lambda: all(_idle(url) for _, url in procs), timeout=600)
        last: list[int] = []

        def settled() -> bool:
            n = explained()[0]
            last.append(n)
            # no new explanation for 3 s; none at all after 60 s of idle replicas: the case explains nothing
            return len(last) > 15 and last[-15] == n and (n > 0 or len(last) > 300)

        _wait(settled, timeout=600)
        n_exp, first, latest = explained()
        return {"replicas": replicas, "start_s": ready - t0, "ingest_s": done - ready, "traces": n_traces,
                "explained": n_exp, "explain_window_s": max((latest - first) / NS, 1e-9)}
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=4000)
    ap.add_argument("--quick", action="store_true", help="1000 traces")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else args.traces

    from benchmarks.dev.chdb_http import ChdbHttpFront
    from collector_processor.sql_executor import close_chdb_sessions

    chdb_dir = tempfile.mkdtemp(prefix="whyslow-bench-chdb-")
    front = ChdbHttpFront(chdb_dir).start()  # the replica processes reach chdb in this process through it
    try:
        body = _measure(n, chdb_dir, front.url)
    finally:
        front.stop()
        close_chdb_sessions()
        shutil.rmtree(chdb_dir, ignore_errors=True)
    write_result("clickhouse_replicas", "Scale-out: replicas on a ClickHouse store (pull mode)",
                 command_line("benchmarks.clickhouse_replicas", argv), body)
    print(body)
    return 0


def _measure(n: int, chdb_dir: str, front_url: str) -> str:
    """Write the spans of ``n`` requests to otel_traces, run the three cases; the result table in markdown."""
    from benchmarks.dev.otel_clickhouse import ClickHouseSpanExporter
    from collector_processor.sql_executor import connect, parse_target
    from plugin.demo.faults import resolve_fault
    from plugin.demo.otlp_export import SpanSender
    from plugin.demo.simulator import Simulator
    from plugin.demo.site import retail_site
    from plugin.replicas import settle_delay

    databases = iter(range(1, 100))

    def fresh() -> str:  # a database of its own per case
        return f"{front_url}/bench{os.getpid()}_{next(databases)}"

    otel_url = fresh()
    otel = connect(f"chdb://{chdb_dir}?database={parse_target(otel_url).database}")
    site = retail_site()
    exporter = ClickHouseSpanExporter(otel, mixed_spelling=False)
    sender = SpanSender(site, exporter, seed=1)
    rate = n / 600.0  # the requests spread over ten minutes, ending 2 minutes ago
    sim = Simulator(site, seed=1, rate=rate)
    start = time.time_ns() - 12 * 60 * NS
    normal = n - n // 10
    for k in range(0, normal, 500):
        traces = sim.generate(min(500, normal - k), start)
        start = traces[-1].start_ns
        sender.record(traces)
        sender.flush()
    sender.record(sim.generate(n // 10, start, resolve_fault(site, "caching-service")))
    sender.flush()
    spans = exporter.rows

    rows = []
    with tempfile.TemporaryDirectory(prefix="whyslow-bench-ch-") as tmp:
        cases = [(1, "sqlite"), (1, fresh()), (2, fresh())]
        for replicas, store in cases:
            r = run_case(replicas, store, otel_url, n, Path(tmp), chdb_dir)
            rows.append(("SQLite (default)" if store == "sqlite" else "ClickHouse (chdb behind the HTTP front)",
                         replicas, f"{spans / r['ingest_s']:,.0f}", f"{spans / r['ingest_s'] / replicas:,.0f}",
                         f"{r['explained']}", f"{r['explained'] / r['explain_window_s']:.1f}",
                         f"{r['start_s']:.1f}"))
    return (f"{n:,} retail-app requests ({spans:,} spans, the last 10 % with a slow caching service) pulled from "
            "otel_traces (chdb in the benchmark process, served over the development HTTP front "
            "benchmarks/dev/chdb_http.py: no ClickHouse server runs on this machine, so the ClickHouse rows measure "
            "the front's one-statement-at-a-time round trips, not a ClickHouse server) by `whyslow serve "
            "--source clickhouse`; spans/s from the replicas being ready until every trace is stored, "
            "explanations/s between the first and the last explanation saved (with 2 replicas each trace is scored "
            f"settle_s = {settle_delay(TRACE_TIMEOUT_S):.1f} s after it is stored and fitted on no earlier, "
            "docs/SCALING.md). "
            "Machine: "
            f"{os.cpu_count()} cores shared with the front, chdb and other jobs.\n\n"
            + markdown_table(["store", "replicas", "spans/s (all)", "spans/s per replica", "explained",
                              "explanations/s", "start-up s"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
