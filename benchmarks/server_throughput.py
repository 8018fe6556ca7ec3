"""Whole-server throughput: spans stored per CPU-second of the `whyslow serve` process, end to end.

The operator probe of issue #14: `whyslow serve` with default settings in its own process, 3 Collector-like
sender processes (OTLP/gRPC, 512-span requests of the collector workload's 26-span traces, fresh trace ids per
request) sending as fast as the server acknowledges. The figure is the server's spans stored divided by the
server process's CPU time (user + system, all threads: receive, spool, assemble, analyse, store, score,
explain), from the first request until everything acknowledged is stored; a fresh server per run. CPU time,
not wall time: the machine is shared, so wall rates vary with the neighbours while CPU-seconds much less.

    .venv/bin/python -m benchmarks.server_throughput               # 5 runs of 30 s
    .venv/bin/python -m benchmarks.server_throughput --runs 3 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import command_line, markdown_table, write_result
from benchmarks.soak import SPANS_PER_REQUEST, add_load_arguments, measure_throughput

NAME = "server_throughput"


def one_run(seconds: float, senders: int, inflight: int, seed: int) -> dict[str, Any]:
    """One fresh server saturated for ``seconds``; checks that every acknowledged span was stored."""
    from tests.support.serve import ServeProcess

    with tempfile.TemporaryDirectory() as tmp:
        srv = ServeProcess(Path(tmp) / "data", log_level="warning").start()
        try:
            res = measure_throughput(srv, seconds, senders, inflight, seed=seed)
        finally:
            res_exit = srv.stop()
    st, snd = res["stats"], res["senders"]
    res["ok"] = bool(res_exit == 0 and st["spans_dropped"] == 0 and snd["lost"] == 0
                     and res["spans_stored"] >= snd["acked"])
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh servers, one after the other")
    ap.add_argument("--seconds", type=float, default=30.0, help="saturation time per run")
    add_load_arguments(ap)
    ap.add_argument("--quick", action="store_true", help="2 runs of 15 s")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = min(args.runs, 2), min(args.seconds, 15.0)
    load = os.getloadavg()[0]
    runs = []
    for k in range(args.runs):
        r = one_run(args.seconds, args.senders, args.inflight, seed=1 + 10 * k)
        runs.append(r)
        print(f"run {k + 1}: {r['spans_per_cpu_s']:,.0f} spans/CPU-s ({r['spans_stored']:,} spans, "
              f"{r['server_cpu_s']:.1f} CPU-s, {r['wall_s']:.1f} s wall), ok={r['ok']}", flush=True)
    rates = [r["spans_per_cpu_s"] for r in runs]
    rows = [(str(k + 1), f"{r['spans_stored']:,}", f"{r['server_cpu_s']:.1f}", f"**{r['spans_per_cpu_s']:,.0f}**",
             f"{r['sustainable_spans_per_s']:,.0f}", f"{r['senders']['refusals']:,}",
             f"{r['senders']['acked']:,} / {r['spans_stored']:,} / {r['stats']['spans_dropped']:,}",
             "yes" if r["ok"] else "**NO**") for k, r in enumerate(runs)]
    ok = all(r["ok"] for r in runs)
    body = (f"`whyslow serve` with default settings in its own process (a fresh data dir per run); {args.senders} "
            f"Collector-like sender processes (OTLP/gRPC, {SPANS_PER_REQUEST}-span requests of the collector "
            f"workload's 26-span traces, fresh trace ids per request, {4 * args.inflight} requests in flight "
            f"each) send as fast as acknowledged for {args.seconds:.0f} s; the server then stores what is left. "
            "Spans per CPU-second = spans stored / CPU time (user + system, every thread) of the server process "
            "from the first request until everything acknowledged is stored: receive, spool, assemble, "
            "analyse, store, score, explain. Load average when the runs started: "
            f"{load:.1f} (2-core machine shared with other jobs: wall rates are the machine's).\n\n"
            f"**Whole server: {statistics.median(rates):,.0f} spans per CPU-second** (median of {len(runs)} runs; "
            f"min {min(rates):,.0f}, max {max(rates):,.0f}).\n\n"
            + markdown_table(["run", "spans stored", "server CPU s", "spans per CPU-second",
                              "acknowledged spans per wall second", "retryable refusals",
                              "acknowledged / stored / dropped", "all acknowledged stored"], rows) + "\n")
    write_result(NAME, "Whole server: spans per CPU-second end to end (`whyslow serve`, defaults)",
                 command_line("benchmarks." + NAME, argv), body)
    print(body)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
