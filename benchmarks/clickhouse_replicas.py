"""Scale-out throughput: `whyslow serve` replicas pulling the demo's spans from ``otel_traces`` into one
ClickHouse store, with 1 and 2 replicas, next to one replica pulling into the SQLite default.

The ClickHouse engine is chdb in this process, served to the replica processes by the development HTTP front
(benchmarks/dev/chdb_http.py; clickhouse-connect, the production client, talks to it). Each case runs two
phases, as a deployment lives: a *learning* phase of normal requests (stamped over the past minutes, back-filled)
until every replica reports a ready model for the entry point (``/api/v1/status``; with 2 replicas the owner
fits only on settled traces, so this takes at least ``settle_s``), then a *measured* phase of normal traffic with
a slow share (one request in ten with a slow caching service), written at once and readable by the lagged pull
together. Measured: ingest (spans/s from the phase being readable until every trace is stored, and spans per
CPU-second of the replica processes until then), explanations of the slow requests (count, rate, and the delay
from the phase being readable to an explanation: with 2 replicas each trace waits ``settle_s`` before it is
scored). On this shared 2-core machine the replicas, the HTTP front and chdb compete for the same cores, so 2
replicas show the overhead of sharing, not the speed-up of 2 machines; docs/SCALING.md sizes a real deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import ROOT, command_line, markdown_table, write_result

NS = 1_000_000_000
TRACE_TIMEOUT_S = 0.5
LAG_S = 3.0          # the pull's lag: the benchmark's exporter writes synchronously, so a short lag is safe
WRITE_AHEAD_S = 10.0  # + 30 ms per request: the measured phase is stamped this far ahead of its writing (no half-read window)
SLOW_EVERY = 10      # one measured request in ten is slow


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


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; the wall-clock time (time.time()) it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(0.2)
    raise TimeoutError(f"benchmark condition not met within {timeout:.0f} s: {what}")


def _status(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/v1/status", timeout=10) as r:
        return dict(json.load(r))


def model_ready(status: dict) -> bool:
    """Whether a replica's status lists at least one model and every listed model is ready."""
    models = status.get("models") or []
    return bool(models) and all(m.get("state") == "ready" for m in models)


def idle(status: dict) -> bool:
    """Whether a replica has nothing settling (replicas only) and nothing queued for scoring or explaining."""
    return int((status.get("replica") or {}).get("settling", 0)) == 0 and int(status["detector"]["pending"]) == 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """Spans of generated requests: how many spans, and the trace ids of the slow ones."""

    traces: int
    spans: int
    slow: set[str]
    first_start_ns: int


def write_phase(otel_url: str, chdb_dir: str, n: int, start_ns: int, seed: int, slow_every: int | None) -> Phase:
    """Write ``n`` retail-app requests to otel_traces from ``start_ns``: over the past minutes for the learning
    phase (``slow_every`` None), as one burst for the measured phase (every ``slow_every``-th slow)."""
    from benchmarks.dev.otel_clickhouse import ClickHouseSpanExporter
    from collector_processor.sql_executor import connect, parse_target
    from plugin.demo.faults import resolve_fault
    from plugin.demo.otlp_export import SpanSender
    from plugin.demo.simulator import Simulator
    from plugin.demo.site import retail_site

    site = retail_site()
    exporter = ClickHouseSpanExporter(connect(f"chdb://{chdb_dir}?database={parse_target(otel_url).database}"),
                                      mixed_spelling=False)
    sender = SpanSender(site, exporter, seed=seed)
    slow: set[str] = set()
    if slow_every is None:
        sim = Simulator(site, seed=seed, rate=n / 120.0)  # two minutes of traffic
        sender.record(sim.generate(n, start_ns))
    else:
        sim = Simulator(site, seed=seed, rate=1000.0)  # a burst: readable by the pull at (nearly) one time
        fault = resolve_fault(site, "caching-service")
        start = start_ns
        for k in range(0, n, slow_every):
            normal = sim.generate(min(slow_every, n - k) - 1, start)
            sender.record(normal)
            start = normal[-1].start_ns if normal else start
            bad = sim.generate(1, start, fault)
            slow.update(sender.record(bad))
            start = bad[-1].start_ns
    sender.flush()
    return Phase(n, exporter.rows, slow, start_ns)


def run_case(replicas: int, store: str, otel_url: str, chdb_dir: str, learn: int, measure: int,
             tmp: Path) -> dict[str, float]:
    """Learning phase, ready models on every replica, measured phase; figures of the measured phase."""
    from collector_processor.sql_executor import connect, parse_target

    learned = write_phase(otel_url, chdb_dir, learn, time.time_ns() - 150 * NS, seed=1, slow_every=None)
    settings = dict(source="clickhouse", source_url=otel_url, source_lag_s=LAG_S, source_window_s=10,
                    source_backfill_s=600, min_traces=min(200, learn), window=2000, refit_interval_s=86400,
                    trace_timeout_s=TRACE_TIMEOUT_S, log_level="warning")
    procs = []
    sqlite_dir = tmp / f"sqlite-{replicas}"
    if store == "sqlite":
        import sqlite3

        def query(sql: str) -> list[tuple]:
            con = sqlite3.connect(sqlite_dir / "whyslow.sqlite3")
            try:
                return list(con.execute(sql).fetchall())
            finally:
                con.close()

        count_traces = "SELECT COUNT(*) FROM traces"
        explanations = "SELECT trace_id, created_unix_nano FROM explanations"
    else:
        ex = connect(f"chdb://{chdb_dir}?database={parse_target(store).database}")
        query = ex.query
        count_traces = f"SELECT uniqExact(trace_id) FROM {ex.database}.traces"
        explanations = f"SELECT trace_id, max(created_unix_nano) FROM {ex.database}.explanations GROUP BY trace_id"
    try:
        t0 = time.time()
        for i in range(replicas):
            extra = {"store": store, "replica": f"{i}/{replicas}"} if store != "sqlite" else {}
            procs.append(_serve(tmp / f"r{replicas}-{i}" if store != "sqlite" else sqlite_dir, **settings, **extra))
        started = time.time()
        ready = _wait(lambda: all(model_ready(_status(url)) for _, url in procs), 600,
                      "a ready model on every replica")
        model_rows = max(int(m.get("rows") or 0) for _, url in procs for m in _status(url)["models"])
        # the measured phase, stamped ahead of its writing so that the lagged pull reads it whole
        stamp = time.time_ns() + int((WRITE_AHEAD_S + 0.03 * measure) * NS)
        measured = write_phase(otel_url, chdb_dir, measure, stamp, seed=2, slow_every=SLOW_EVERY)
        readable = stamp / NS + LAG_S
        if time.time() > readable - LAG_S:
            raise RuntimeError("writing the measured phase outran its stamps: raise WRITE_AHEAD_S")
        _wait(lambda: time.time() >= readable, 60, "the measured phase readable")
        cpu0, own0 = sum(cpu_seconds(p.pid) for p, _ in procs), time.process_time()
        stored = _wait(lambda: int(query(count_traces)[0][0]) >= learn + measure, 900, "every trace stored")
        cpu1, own1 = sum(cpu_seconds(p.pid) for p, _ in procs), time.process_time()
        _wait(lambda: all(idle(_status(url)) for _, url in procs), 600, "nothing settling or queued")
        last: list[int] = []

        def quiet() -> bool:  # no new explanation for 3 s
            last.append(len(query(explanations)))
            return len(last) > 15 and last[-15] == last[-1]

        _wait(quiet, 120, "explanations saved")
        rows = query(explanations)
        slow = [int(t) / NS for tid, t in rows if tid in measured.slow]
        delays = sorted(t - readable for t in slow)
        return {"replicas": replicas, "start_s": started - t0, "learn_s": ready - started,
                "spans": measured.spans, "ingest_s": max(stored - readable, 1e-9),
                "cpu_s": max(cpu1 - cpu0, 1e-9), "own_cpu_s": own1 - own0, "slow": len(measured.slow), "explained": len(slow),
                "false": sum(1 for tid, _ in rows if tid not in measured.slow),
                "explain_s": max(max(slow) - min(slow), 1e-9) if slow else 0.0,
                "delay_median_s": statistics.median(delays) if delays else float("nan"),
                "delay_max_s": delays[-1] if delays else float("nan"), "learn_spans": learned.spans,
                "model_rows": model_rows}
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
    ap.add_argument("--learn", type=int, default=300, help="normal requests of the learning phase")
    ap.add_argument("--measure", type=int, default=1000, help="requests of the measured phase (1 in 10 slow)")
    ap.add_argument("--quick", action="store_true", help="250 and 300 requests (as run_all --quick passes it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.learn, args.measure = 250, 300
    if args.learn < 50 or args.measure < SLOW_EVERY:
        ap.error(f"--learn needs at least 50 requests and --measure at least {SLOW_EVERY}")

    from benchmarks.dev.chdb_http import ChdbHttpFront
    from collector_processor.sql_executor import close_chdb_sessions

    chdb_dir = tempfile.mkdtemp(prefix="whyslow-bench-chdb-")
    front = ChdbHttpFront(chdb_dir).start()  # the replica processes reach chdb in this process through it
    try:
        body = _measure(args.learn, args.measure, chdb_dir, front.url)
    finally:
        front.stop()
        close_chdb_sessions()
        shutil.rmtree(chdb_dir, ignore_errors=True)
    write_result("clickhouse_replicas", "Scale-out: replicas on a ClickHouse store (pull mode)",
                 command_line("benchmarks.clickhouse_replicas", argv), body)
    print(body)
    return 0


def _measure(learn: int, measure: int, chdb_dir: str, front_url: str) -> str:
    """Run the three cases, each on a database of its own (spans and store); the result text in markdown."""
    from plugin.replicas import settle_delay

    databases = iter(range(1, 100))

    def fresh() -> str:
        return f"{front_url}/bench{os.getpid()}_{next(databases)}"

    rows = []
    settle = settle_delay(TRACE_TIMEOUT_S)
    with tempfile.TemporaryDirectory(prefix="whyslow-bench-ch-") as tmp:
        for replicas, store in [(1, "sqlite"), (1, fresh()), (2, fresh())]:
            r = run_case(replicas, store, fresh(), chdb_dir, learn, measure, Path(tmp))
            rows.append(("SQLite (default)" if store == "sqlite" else "ClickHouse (chdb behind the HTTP front)",
                         replicas, f"{r['spans'] / r['ingest_s']:,.0f}",
                         f"{r['spans'] / r['cpu_s']:,.0f} ({r['spans'] / (r['cpu_s'] + r['own_cpu_s']):,.0f})", f"{r['explained']} / {r['slow']}", f"{r['false']}",
                         f"{r['explained'] / r['explain_s']:.1f}" if r["explain_s"] else "-",
                         f"{r['delay_median_s']:.1f} / {r['delay_max_s']:.1f}",
                         f"{r['start_s']:.1f} + {r['learn_s']:.1f}", f"{r['model_rows']}"))
    return (f"Per case: {learn:,} normal retail-app requests (learning phase, back-filled from otel_traces), then, once every "
            f"replica reports a ready model, {measure:,} requests (one in {SLOW_EVERY} with a slow "
            "caching service) readable by the pull at once (lag "
            f"{LAG_S:.0f} s). Pulled by `whyslow serve --source clickhouse` (defaults otherwise; `min_traces 200`, "
            "no refit during the run). spans/s: measured phase's spans from readable until every trace is stored; "
            "spans per CPU-s: the same spans over the CPU time of all replica processes in that interval (in brackets: with the benchmark process's CPU time added, which holds chdb and the HTTP front - the ClickHouse store's own work - and the benchmark's polling); "
            "explained: slow requests explained / slow requests; false: explanations of normal requests (either "
            "phase); explanations/s: between the first and the last explanation of a slow request; delay: seconds "
            "from the phase being readable to a slow request's explanation (median / max) - with 2 replicas every "
            f"trace is held settle_s = {settle:.1f} s after it is stored before it is scored (and the first model "
            "is fitted on settled traces only), which is what the delay and the learning time cost; "
            "start-up + learning: seconds until every replica serves, then until every replica has a ready model; model rows: the traces the first model was fitted on. "
            "The ClickHouse rows run against chdb in the benchmark process behind the development HTTP front "
            "(benchmarks/dev/chdb_http.py, one statement at a time), not against a ClickHouse server (none can run "
            f"on this machine). Machine: {os.cpu_count()} cores shared by the replicas, the front, chdb and "
            "other jobs.\n\n"
            + markdown_table(["store", "replicas", "spans/s", "spans per CPU-s (+ chdb)", "explained", "false",
                              "explanations/s", "delay s (median / max)", "start-up + learning s",
                              "model rows"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
