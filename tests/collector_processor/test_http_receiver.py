"""collector_processor.http_receiver: addresses, bounded decompression, and answers on a real socket (retryable
503, partial success, error bodies in the request's encoding)."""

from __future__ import annotations

import gzip
import http.client
import json
import zlib

import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector_processor import OtlpHttpReceiver
from collector_processor.http_receiver import _decompress, _split_host_port, _TooLarge
from collector_processor.otlp_decode import DecodeFailure
from tests.support.otlp_build import SERVER, request


def post(port: int, body: bytes, ctype: str = "application/x-protobuf", **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": ctype, **headers})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def spans(n: int, bad: int = 0) -> bytes:
    good = [{"service": "web", "trace": 1, "span": i + 1, "name": "GET /", "kind": SERVER, "start_ms": 0,
             "end_ms": 5} for i in range(n)]
    return request(good + [{"service": "web", "trace": b"", "span": 99 + i, "start_ms": 0, "end_ms": 1}
                           for i in range(bad)]).SerializeToString()


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:4318", ("127.0.0.1", 4318)), ("http://0.0.0.0:4318/", ("0.0.0.0", 4318)),
    ("[::1]:0", ("::1", 0)), (":9000", ("127.0.0.1", 9000)), ("localhost:1", ("localhost", 1)),
])
def test_addresses(address: str, expected: tuple[str, int]) -> None:
    assert _split_host_port(address) == expected


def test_decompression_is_bounded_and_checked() -> None:
    data = b"span bytes " * 1000
    assert _decompress(gzip.compress(data), "gzip", len(data)) == data
    assert _decompress(zlib.compress(data), "deflate", len(data)) == data
    with pytest.raises(_TooLarge, match=f"exceeds the limit of {len(data) - 1} bytes"):
        _decompress(gzip.compress(data), "gzip", len(data) - 1)
    with pytest.raises(DecodeFailure, match="truncated"):
        _decompress(gzip.compress(data)[:-20], "gzip", len(data))
    with pytest.raises(DecodeFailure, match="not valid gzip"):
        _decompress(b"plain text", "gzip", 100)


def test_partial_success_and_a_full_pipeline_on_a_real_socket(make_pipeline) -> None:
    pipeline = make_pipeline(max_queue_spans=3, retry_after_s=1.5)
    rx = OtlpHttpReceiver(pipeline, "127.0.0.1:0").start()
    try:
        status, headers, body = post(rx.port, spans(2, bad=1))
        resp = ExportTraceServiceResponse.FromString(body)
        assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
        assert resp.partial_success.rejected_spans == 1
        status, headers, body = post(rx.port, spans(2))  # 2 queued + 2 > 3
        assert status == 503 and headers["Retry-After"] == "2"  # whole seconds, rounded up
        assert Status.FromString(body).code == 14 and "retry" in Status.FromString(body).message
        status, headers, body = post(rx.port, b"{nope", "application/json")
        assert status == 400 and headers["Content-Type"] == "application/json"
        assert json.loads(body)["code"] == 3 and "not valid JSON" in json.loads(body)["message"]
    finally:
        rx.stop(0)
    s = pipeline.stats()
    assert (s["spans_rejected"], s["spans_refused"], s["requests_refused"], s["requests_invalid"]) == (1, 2, 1, 1)


def test_a_deeply_nested_json_body_gets_400(make_pipeline) -> None:
    pipeline = make_pipeline()
    rx = OtlpHttpReceiver(pipeline, "127.0.0.1:0").start()
    try:
        status, _, _ = post(rx.port, b"[" * 100_000 + b"]" * 100_000, "application/json")
    finally:
        rx.stop(0)
    assert status == 400 and pipeline.stats()["requests_invalid"] == 1
