"""Train-Ticket through ``whyslow serve`` at its defaults: what ``GET /api/v1/incident`` names for each fault window.

The span files are replayed in time order as real OTLP/gRPC exports into a running ``WhySlowServer`` (default
``ServeConfig``: its models, detector, threshold and explanations), their timestamps moved so that the day ends a
minute ago (the store's retention would otherwise drop 2023 traces). Then, for each fault, the incident endpoint's
service method is asked about the window [injection, injection + 3 min) -- the faults last 3 minutes -- with its
default baseline (the preceding 30 minutes, earlier incidents left out).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAULT_S = 180  # each fault lasts 3 minutes


@dataclass
class ServeRun:
    """The incident answer per fault and what the server did."""

    answers: list[dict[str, Any]]
    seconds_replay: float
    seconds_queries: list[float]
    detector: dict[str, Any]
    pipeline: dict[str, Any]


def shifted_requests(files: Sequence[Path], offset_ns: int) -> Iterator[Any]:
    """The OTLP requests of the CSV files with every span moved by ``offset_ns``."""
    from collector_processor import csv_spans

    for path in files:
        for request in csv_spans.requests_from_csv(path):
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        span.start_time_unix_nano += offset_ns
                        span.end_time_unix_nano += offset_ns
            yield request


def last_end_ns(files: Sequence[Path]) -> int:
    import pandas as pd

    return int(max(pd.read_csv(p, usecols=["EndTimeUnixNano"])["EndTimeUnixNano"].max() for p in files))


def serve_incidents(files: Sequence[Path], inject_ns: Sequence[int], settle_s: float = 600.0,
                    **query: Any) -> ServeRun:
    """Replay ``files`` into a default ``whyslow serve`` and ask ``incident`` about each fault window."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    from plugin.config import ServeConfig
    from plugin.server import WhySlowServer

    files = sorted(set(files), key=lambda p: p.name)
    offset = time.time_ns() - 60 * 10**9 - last_end_ns(files)
    with tempfile.TemporaryDirectory() as tmp:
        config = ServeConfig(data_dir=str(Path(tmp) / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                             http="127.0.0.1:0", grpc="127.0.0.1:0")
        server = WhySlowServer(config).start()
        try:
            t0 = time.perf_counter()
            with grpc.insecure_channel(f"127.0.0.1:{server.ports['otlp_grpc']}") as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                for request in shifted_requests(files, offset):
                    stub.Export(request, timeout=60)
            server.pipeline.flush()
            _settle(server, settle_s)
            replay = time.perf_counter() - t0
            answers, seconds = [], []
            for ns in inject_ns:
                lo = (ns + offset) // 1_000_000
                t1 = time.perf_counter()
                answers.append(server.service.incident(lo, lo + FAULT_S * 1000, **query))
                seconds.append(time.perf_counter() - t1)
            return ServeRun(answers, replay, seconds, dict(server.detector.counters), server.service.pipeline_stats())
        finally:
            server.stop()


def _settle(server: Any, timeout_s: float) -> None:
    """Wait until every entry point with enough traces has its model and every trace is scored and explained."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        server.detector.drain(max(deadline - time.monotonic(), 0.1))
        learning = [s for s in server.models.status() if s.state != "ready" and s.traces_seen >= s.min_traces]
        quiet = quiet + 1 if not learning and server.detector.pending == 0 else 0
        time.sleep(1.0)
