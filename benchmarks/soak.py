"""Soak: `whyslow serve` (the whole server, its own process, defaults) under 1.5x its sustainable load.

Phase 1 measures the sustainable rate: Collector-like senders export as fast as the server acknowledges. Phase 2
offers 1.5x that rate for the soak duration (10 minutes by default) while the server's RSS and CPU time are
sampled every second. The senders behave like the OpenTelemetry Collector's otlp exporter: they retry only
what the OTLP spec calls retryable, honour RetryInfo, give up after 120 s, and drop batches when their own
bounded sending queue is full (that is where overload must end up: at the sender, counted, never inside the
server). At the end every span the server acknowledged must be stored, nothing may be dropped after
acceptance, and RSS must stay bounded. The whole-server throughput (spans stored per CPU-second of the server
process: receive, spool, assemble, analyse, store, score, explain) is reported from phase 1.

    .venv/bin/python -m benchmarks.soak                 # 60 s calibration + 10 min soak
    .venv/bin/python -m benchmarks.soak --soak-s 60     # a shortened check
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import command_line, markdown_table, write_result

NAME = "soak"
SPANS_PER_REQUEST = 512
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MAX_ELAPSED_S = 120.0   # the Collector exporter's default retry_on_failure.max_elapsed_time
SENDERS = 3            # load processes (the operator probe of issue #14: 3 processes, 512-span batches)
SENDING_QUEUE = 64      # batches a sender process holds before it drops new ones (its sending_queue)


def _pool(n_requests: int, seed: int) -> list[tuple[bytes, list[bytes], int]]:
    """Requests of the collector workload with their trace ids and span counts (ids are replaced per send)."""
    from benchmarks.collector_workload import make_requests
    from collector_processor.otlp_decode import parse_request

    out = []
    for payload in make_requests(n_requests * SPANS_PER_REQUEST, SPANS_PER_REQUEST, seed=seed):
        req = parse_request(payload)
        tids = {sp.trace_id for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans}
        n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        out.append((payload, sorted(tids), n))
    return out


def _fresh(payload: bytes, tids: list[bytes]) -> bytes:
    """The request with new random trace ids (every send is new data; spans keep their structure)."""
    for t in tids:
        payload = payload.replace(t, os.urandom(16))
    return payload


def _sender(port: int, rate: float | None, duration: float, seed: int, inflight: int, out: mp.Queue) -> None:
    """One sender process: paced (``rate`` spans/s) or as fast as acknowledged (``rate`` None)."""
    import grpc
    from google.rpc.error_details_pb2 import RetryInfo

    os.nice(5)
    pool = _pool(16, seed)
    counts = {"offered": 0, "acked": 0, "refusals": 0, "queue_dropped": 0, "gave_up": 0, "lost": 0}
    lock = threading.Lock()
    work: queue.Queue = queue.Queue(maxsize=SENDING_QUEUE if rate else inflight)
    end = time.monotonic() + duration
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
                 grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS}

    def add(key: str, n: int) -> None:
        with lock:
            counts[key] += n

    def worker(ch: grpc.Channel) -> None:
        export = ch.unary_unary(EXPORT)
        while True:
            item = work.get()
            if item is None:
                return
            body, n = item
            first = time.monotonic()
            while True:
                try:
                    export(body, timeout=10)
                    add("acked", n)
                    break
                except grpc.RpcError as err:
                    code = err.code()
                    info = dict(err.trailing_metadata() or ()).get("google.rpc.retryinfo-bin")
                    if code in retryable or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and info):
                        add("refusals", 1)
                        if time.monotonic() - first > MAX_ELAPSED_S:
                            add("gave_up", n)
                            break
                        time.sleep(RetryInfo.FromString(info).retry_delay.ToNanoseconds() / 1e9 if info else 1.0)
                        continue
                    add("lost", n)
                    break

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        threads = [threading.Thread(target=worker, args=(ch,), daemon=True) for _ in range(inflight)]
        for t in threads:
            t.start()
        k = 0
        next_at = time.monotonic()
        while time.monotonic() < end:
            payload, tids, n = pool[k % len(pool)]
            k += 1
            body = _fresh(payload, tids)
            add("offered", n)
            if rate:
                next_at += n / rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    work.put_nowait((body, n))
                except queue.Full:  # the sender's own queue is full: it drops (the Collector does the same)
                    add("queue_dropped", n)
            else:
                work.put((body, n))
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join(MAX_ELAPSED_S + 30)
    out.put(counts)


def _proc_sample(pid: int) -> tuple[float, float]:
    """(RSS in MiB, user+system CPU seconds) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / tick


def _run_senders(port: int, rate: float | None, duration: float, n_proc: int, inflight: int,
                 seed: int) -> dict[str, int]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_sender, args=(port, rate / n_proc if rate else None, duration, seed + i, inflight,
                                               out)) for i in range(n_proc)]
    for p in procs:
        p.start()
    total: dict[str, int] = {}
    for _ in procs:
        for k, v in out.get(timeout=duration + MAX_ELAPSED_S + 120).items():
            total[k] = total.get(k, 0) + v
    for p in procs:
        p.join(30)
    return total


def measure_throughput(srv: Any, seconds: float, n_proc: int, inflight: int, seed: int) -> dict[str, Any]:
    """Saturate a running server (``ServeProcess``) for ``seconds`` with ``n_proc`` senders of ``4 x inflight``
    requests in flight each, then wait until it has stored everything: the acknowledged spans per wall second
    (the sustainable rate) and the spans stored per CPU-second of the server process (user + system, every
    thread: receive, spool, assemble, analyse, store, score, explain), from the first request to the drain."""
    pid = srv.proc.pid
    s0, (_, cpu0) = srv.get("/api/v1/status")[1]["pipeline"], _proc_sample(pid)
    t0 = time.monotonic()
    senders = _run_senders(srv.ports["otlp_grpc"], None, seconds, n_proc, inflight * 4, seed=seed)
    wall = time.monotonic() - t0
    s1 = _drain(srv, at_least=s0["spans_stored"] + senders["acked"])
    _, cpu1 = _proc_sample(pid)
    cpu = max(1e-9, cpu1 - cpu0)
    stored = s1["spans_stored"] - s0["spans_stored"]
    return {"senders": senders, "wall_s": wall, "sustainable_spans_per_s": senders["acked"] / wall,
            "server_cpu_s": cpu, "spans_stored": stored, "spans_per_cpu_s": stored / cpu, "stats": s1}


def run(calibrate_s: float, soak_s: float, factor: float, n_proc: int, inflight: int) -> dict[str, object]:
    from tests.support.serve import ServeProcess

    res: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServeProcess(Path(tmp) / "data", log_level="warning").start()
        try:
            pid = srv.proc.pid
            samples: list[tuple[float, float, float]] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    try:
                        samples.append((time.monotonic(), *_proc_sample(pid)))
                    except OSError:
                        return
                    stop.wait(1.0)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            port = srv.ports["otlp_grpc"]
            # phase 1: sustainable rate and the whole server's spans per CPU-second
            phase1 = measure_throughput(srv, calibrate_s, n_proc, inflight, seed=1)
            sustainable = phase1["sustainable_spans_per_s"]
            res["calibration"] = phase1["senders"]
            res["sustainable_spans_per_s"] = sustainable
            res["server_cpu_s_cal"] = phase1["server_cpu_s"]
            res["spans_per_cpu_s"] = phase1["spans_per_cpu_s"]
            # phase 2: 1.5x the sustainable rate
            t1 = time.monotonic()
            soak = _run_senders(port, factor * sustainable, soak_s, n_proc, inflight * 4, seed=100)
            res["soak_wall_s"] = time.monotonic() - t1
            acked = phase1["senders"]["acked"] + soak["acked"]
            final = _drain(srv, at_least=phase1["stats"]["spans_stored"] - phase1["spans_stored"] + acked)
            stop.set()
            sampler.join(5)
            res["soak"] = soak
            res["stats"] = final
            soak_rss = [r for t, r, _ in samples if t >= t1]
            res["rss_start_mib"] = soak_rss[0] if soak_rss else 0.0
            res["rss_peak_mib"] = max(soak_rss, default=0.0)
            res["rss_end_mib"] = soak_rss[-1] if soak_rss else 0.0
            res["rss_samples"] = len(soak_rss)
            # the curve: the peak RSS of every minute of the soak (and of the drain after it)
            minutes: dict[int, float] = {}
            for t, r, _ in samples:
                if t >= t1:
                    m = int((t - t1) // 60)
                    minutes[m] = max(minutes.get(m, 0.0), r)
            res["rss_by_minute"] = [minutes[m] for m in sorted(minutes)]
        finally:
            res["exit_status"] = srv.stop()
    acked = res["calibration"]["acked"] + res["soak"]["acked"]  # type: ignore[index]
    st = res["stats"]
    res["acked_total"] = acked
    # every acknowledged span stored (more can be stored: a request accepted after its sender timed out)
    res["ok"] = bool(st["spans_stored"] >= acked and st["spans_dropped"] == 0 and res["soak"]["lost"] == 0  # type: ignore[index]
                     and res["calibration"]["lost"] == 0 and res["exit_status"] == 0)  # type: ignore[index]
    return res


def _drain(srv: object, at_least: int = 0, timeout: float = 300.0) -> dict[str, int]:
    """Pipeline stats once nothing is queued, buffered, being stored or waiting to be scored (traces complete
    after 2 s idle) and at least ``at_least`` spans are stored; after ``timeout`` the stats as they are."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        body = srv.get("/api/v1/status")[1]  # type: ignore[attr-defined]
        st, det = body["pipeline"], body["detector"]
        quiet = (st["queued_spans"] == 0 and st["buffered_spans"] == 0 and st.get("processing_spans", 0) == 0
                 and det.get("pending", 0) == 0 and st["spans_stored"] >= at_least)
        if quiet and last is not None and last["spans_stored"] == st["spans_stored"]:
            return st
        if time.monotonic() > deadline:
            print(f"the server did not drain within {timeout:.0f} s: {st}", flush=True)
            return st
        last = st if quiet else None
        time.sleep(1.0)


def add_load_arguments(ap: argparse.ArgumentParser) -> None:
    """The senders' options (shared with benchmarks.server_throughput)."""
    ap.add_argument("--senders", type=int, default=SENDERS, help="sender processes")
    ap.add_argument("--inflight", type=int, default=4, help="requests in flight per sender (x4)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibrate-s", type=float, default=60.0, help="phase 1 length (sustainable rate)")
    ap.add_argument("--soak-s", type=float, default=600.0, help="phase 2 length at --factor x that rate")
    ap.add_argument("--factor", type=float, default=1.5, help="offered load / sustainable load")
    add_load_arguments(ap)
    ap.add_argument("--quick", action="store_true", help="20 s calibration, 60 s soak")
    args = ap.parse_args(argv)
    if args.quick:
        args.calibrate_s, args.soak_s = min(args.calibrate_s, 20.0), min(args.soak_s, 60.0)
    res = run(args.calibrate_s, args.soak_s, args.factor, args.senders, args.inflight)
    cal, soak, st = res["calibration"], res["soak"], res["stats"]
    load = os.getloadavg()[0]
    rows = [
        ("sustainable rate (phase 1: senders as fast as acknowledged, acknowledged spans per wall second)",
         f"{res['sustainable_spans_per_s']:,.0f} (refusals while saturating: {cal['refusals']:,})"),
        ("**whole server: spans stored per CPU-second of the server process** (receive, spool, assemble, "
         "analyse, store, score, explain)", f"**{res['spans_per_cpu_s']:,.0f}**"),
        ("phase 1: server CPU-seconds / wall seconds", f"{res['server_cpu_s_cal']:.1f} / {args.calibrate_s:.0f}"),
        (f"phase 2 offered ({args.factor:g}x for {args.soak_s:.0f} s; took {res['soak_wall_s']:.0f} s with the "
         "senders' retries)",
         f"{soak['offered']:,} spans ({soak['offered'] / args.soak_s:,.0f} per second)"),
        ("phase 2 acknowledged", f"{soak['acked']:,} spans"),
        ("phase 2 dropped by the senders' own full queues (Collector behaviour under overload)",
         f"{soak['queue_dropped']:,} spans"),
        ("retryable refusals answered (counted by the server: requests_refused)",
         f"{soak['refusals'] + cal['refusals']:,} ({st['requests_refused']:,})"),
        ("senders gave up after 120 s / got a non-retryable answer", f"{soak['gave_up']:,} / {soak['lost']:,}"),
        ("acknowledged in total / stored by the server / dropped after acceptance",
         f"{res['acked_total']:,} / {st['spans_stored']:,} / {st['spans_dropped']:,}"),
        ("server RSS at soak start / peak / end (MiB, sampled every second)",
         f"{res['rss_start_mib']:,.0f} / {res['rss_peak_mib']:,.0f} / {res['rss_end_mib']:,.0f} "
         f"({res['rss_samples']} samples)"),
        ("server RSS curve: peak of each minute from the soak's start (MiB)",
         " / ".join(f"{r:,.0f}" for r in res["rss_by_minute"])),  # type: ignore[attr-defined]
        ("every acknowledged span stored, nothing dropped, clean exit", "yes" if res["ok"] else "**NO**"),
    ]
    body = (f"`whyslow serve` with default settings in its own process; {args.senders} Collector-like sender "
            f"processes (OTLP/gRPC, {SPANS_PER_REQUEST}-span requests of the collector workload's 26-span traces, "
            f"fresh trace ids per request). Load average when the run started: {load:.1f} (2-core machine "
            "shared with other jobs; senders and server share it, so the rate is the machine's, the CPU-second "
            "figure the server's own).\n\n" + markdown_table(["measure", "value"], rows) + "\n")
    write_result(NAME, "Soak: the whole server at 1.5x its sustainable load", command_line("benchmarks.soak", argv),
                 body)
    print(body)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
