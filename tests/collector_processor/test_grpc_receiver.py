"""collector_processor.grpc_receiver: OTLP/gRPC Export on a real grpcio server (OK, partial success, bind errors)."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_processor import OtlpGrpcReceiver
from collector_processor.grpc_receiver import _split_address
from tests.support.otlp_build import SERVER, request


def test_addresses_may_carry_a_scheme() -> None:
    assert _split_address("http://127.0.0.1:4317") == "127.0.0.1:4317"
    assert _split_address("https://[::1]:4317") == "[::1]:4317"
    assert _split_address("0.0.0.0:4317") == "0.0.0.0:4317"


def test_export_answers_ok_or_partial_success_and_stop_is_idempotent(pipeline) -> None:
    rx = OtlpGrpcReceiver(pipeline, "http://127.0.0.1:0").start()
    try:
        good = {"service": "web", "trace": 1, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0, "end_ms": 5}
        bad = {"service": "web", "trace": b"", "span": 2, "start_ms": 0, "end_ms": 1}
        with grpc.insecure_channel(f"127.0.0.1:{rx.port}") as channel:
            stub = TraceServiceStub(channel)
            assert stub.Export(request([good]), timeout=10) == ExportTraceServiceResponse()
            resp = stub.Export(request([{**good, "trace": 2}, bad]), timeout=10)
        assert resp.partial_success.rejected_spans == 1 and resp.partial_success.error_message
    finally:
        rx.stop(0)
        rx.stop(0)
    s = pipeline.stats()
    assert (s["requests_received"], s["spans_accepted"], s["spans_rejected"]) == (2, 2, 1)


def test_a_taken_port_is_refused(pipeline) -> None:
    first = OtlpGrpcReceiver(pipeline, "127.0.0.1:0").start()
    try:
        with pytest.raises((OSError, RuntimeError)):
            OtlpGrpcReceiver(pipeline, f"127.0.0.1:{first.port}").start()
    finally:
        first.stop(0)
