"""OTLP/HTTP receiver: OTLP/JSON with hex ids posted by hand, protobuf, gzip, and every error status."""

from __future__ import annotations

import gzip
import http.client
import json
import time

import grpc
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_processor import OtlpHttpReceiver
from collector_processor.otlp_json import parse_json_request
from tests.support.otlp_build import CLIENT, SERVER, T0, request
from tests.support.pipeline import complete_all

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
ROOT_HEX = "eee19b7ec3c1b174"
CHILD_HEX = "eee19b7ec3c1b173"


def post(port: int, body: bytes, ctype: str = "application/x-protobuf", encoding: str | None = None,
         path: str = "/v1/traces", method: str = "POST", headers: dict | None = None):
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Content-Type": ctype}
    if encoding:
        h["Content-Encoding"] = encoding
    h.update(headers or {})
    con.request(method, path, body=body, headers=h)
    r = con.getresponse()
    data = r.read()
    con.close()
    return r.status, dict(r.getheaders()), data


def otlp_json_doc(trace=TRACE_HEX, root=ROOT_HEX, child=CHILD_HEX) -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [
            {"traceId": trace, "spanId": root, "name": "GET /home", "kind": 2,
             "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 50_000_000),
             "attributes": [{"key": "http.route", "value": {"stringValue": "/home"}},
                            {"key": "http.request.method", "value": {"stringValue": "GET"}},
                            {"key": "http.response.status_code", "value": {"intValue": "200"}}],
             "status": {"code": 0}, "someFutureField": {"x": 1}},
            {"traceId": trace, "spanId": child, "parentSpanId": root, "name": "SELECT users", "kind": 3,
             "startTimeUnixNano": T0 + 10_000_000, "endTimeUnixNano": str(T0 + 30_000_000),
             "attributes": [{"key": "db.system", "value": {"stringValue": "postgresql"}}],
             "status": {"code": 2, "message": "timeout"}},
        ]}]}]}


def test_json_ids_are_hex_not_base64():
    req = parse_json_request(json.dumps(otlp_json_doc()).encode())
    sp = req.resource_spans[0].scope_spans[0].spans
    assert sp[0].trace_id == bytes.fromhex(TRACE_HEX) and sp[0].span_id == bytes.fromhex(ROOT_HEX)
    assert sp[1].parent_span_id == bytes.fromhex(ROOT_HEX)
    assert sp[0].kind == SERVER and sp[1].kind == CLIENT and sp[1].status.code == 2
    assert sp[1].start_time_unix_nano == T0 + 10_000_000


def test_json_post_end_to_end(receivers, pipeline, store):
    _, h = receivers
    status, headers, body = post(h.port, json.dumps(otlp_json_doc()).encode(), "application/json; charset=utf-8")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {}
    complete_all(pipeline)
    tf = store.trace_features(TRACE_HEX)
    assert tf is not None and tf.entry == "web:GET /home"
    assert tf.nodes["postgresql:SELECT users"].latency_ms == 20.0 and tf.nodes["postgresql:SELECT users"].error
    assert tf.nodes["web:GET /home"].own_ms == 30.0


def test_json_gzip_and_partial_success(receivers, pipeline, store):
    _, h = receivers
    doc = otlp_json_doc()
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(spans[1], spanId="zz-not-hex"))
    spans.append(dict(spans[1], spanId="00000000000000aa", endTimeUnixNano=str(T0)))  # ends before it starts
    status, headers, body = post(h.port, gzip.compress(json.dumps(doc).encode()), "application/json", "gzip")
    assert status == 200
    ps = json.loads(body)["partialSuccess"]
    assert ps["rejectedSpans"] == "2" and "invalid span_id" in ps["errorMessage"] and "timestamps" in ps["errorMessage"]
    st = pipeline.stats()
    assert (st["spans_received"], st["spans_accepted"], st["spans_rejected"]) == (4, 2, 2)
    complete_all(pipeline)
    assert store.trace_features(TRACE_HEX).n_spans == 2


def _status_of(body: bytes, ctype: str) -> Status:
    st = Status()
    if ctype == "application/json":
        st.code = json.loads(body).get("code", 0)
        st.message = json.loads(body)["message"]
    else:
        st.ParseFromString(body)
    return st


@pytest.mark.parametrize("ctype", ["application/x-protobuf", "application/json"])
def test_garbage_and_truncated_bodies_get_400(receivers, pipeline, ctype):
    _, h = receivers
    good = request([{"service": "a", "span": 1, "name": "x", "kind": SERVER, "start_ms": 0, "end_ms": 5}])
    raw = good.SerializeToString()
    bodies = [b"\xff\xfe garbage \x00\x01", raw[: len(raw) // 2]] if ctype.endswith("protobuf") else \
        [b"{not json", b"[1,2]", json.dumps({"resourceSpans": "not a list"}).encode(),
         json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}).encode()]
    for body in bodies:
        status, headers, data = post(h.port, body, ctype)
        assert status == 400, body
        assert headers["Content-Type"] == ctype
        assert _status_of(data, ctype).message
    # the receiver still works and nothing else was lost
    assert post(h.port, raw)[0] == 200
    st = pipeline.stats()
    assert st["requests_invalid"] == len(bodies) and st["requests_received"] == len(bodies) + 1
    assert st["spans_accepted"] == 1


def test_wrong_content_type_method_path(receivers):
    _, h = receivers
    assert post(h.port, b"{}", "text/plain")[0] == 415
    assert post(h.port, b"{}", "application/x-protobuf", encoding="br")[0] == 415
    assert post(h.port, b"", path="/v1/metrics")[0] == 404
    assert post(h.port, b"", method="GET")[0] == 405
    # a caller that did not speak protobuf (curl, a browser, a wrong exporter) reads the Status as JSON
    for status, kw in ((415, {"ctype": "text/plain"}), (404, {"ctype": "application/json", "path": "/v1/logs"}),
                       (405, {"ctype": "", "method": "GET"})):
        code, headers, data = post(h.port, b"{}", **kw)
        assert code == status and headers["Content-Type"] == "application/json"
        assert "/v1/traces" in json.loads(data)["message"] or "Content-Type" in json.loads(data)["message"]
    code, headers, data = post(h.port, b"", "application/x-protobuf", path="/v1/metrics")
    assert code == 404 and headers["Content-Type"] == "application/x-protobuf"
    assert "/v1/traces" in _status_of(data, "application/x-protobuf").message


def test_oversized_body_and_gzip_bomb_get_413(make_pipeline, store):
    p = make_pipeline(max_recv_bytes=64 * 1024)
    h = OtlpHttpReceiver(p, "127.0.0.1:0").start()
    try:
        status, _, data = post(h.port, b"\x00" * (65 * 1024))
        assert status == 413 and b"exceeds" in data
        bomb = gzip.compress(b"\x00" * (10 * 1024 * 1024))  # ~10 KiB that inflates to 10 MiB
        assert len(bomb) < 64 * 1024
        status, _, data = post(h.port, bomb, encoding="gzip")
        assert status == 413
        assert post(h.port, b"\x1f\x8b not gzip", encoding="gzip")[0] == 400
        ok = request([{"service": "a", "span": 1, "name": "x", "kind": SERVER, "start_ms": 0, "end_ms": 5}])
        assert post(h.port, gzip.compress(ok.SerializeToString()), encoding="gzip")[0] == 200
        st = p.stats()
        assert st["spans_accepted"] == 1 and st["requests_too_large"] == 2 and st["requests_invalid"] == 1
    finally:
        h.stop(0)


def test_invalid_spans_partial_success_protobuf_and_grpc(receivers, pipeline, store):
    g, h = receivers
    huge = "x" * 1_000_000
    spans = [
        {"service": "a", "trace": 7, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0, "end_ms": 10,
         "attrs": {"http.route": huge, "comment": huge}},
        {"service": "a", "trace": 7, "span": 2, "parent": 1, "name": "child", "start_ms": 1, "end_ms": 3},
        {"service": "a", "trace": b"\x01" * 15, "span": 3, "name": "short trace id", "start_ms": 0, "end_ms": 1},
        {"service": "a", "trace": 0, "span": 4, "name": "zero trace id", "start_ms": 0, "end_ms": 1},
        {"service": "a", "trace": 7, "span": 0, "name": "zero span id", "start_ms": 0, "end_ms": 1},
        {"service": "a", "trace": 7, "span": 5, "parent": b"\x01\x02", "name": "bad parent", "start_ms": 0, "end_ms": 1},
        {"service": "a", "trace": 7, "span": 6, "parent": 1, "name": "negative", "start_ms": 5, "end_ms": 4},
    ]
    status, _, body = post(h.port, request(spans).SerializeToString())
    assert status == 200
    resp = ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 5
    assert "invalid trace_id" in resp.partial_success.error_message
    # the same over gRPC
    with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
        resp = TraceServiceStub(ch).Export(request([dict(s, trace=8) if s["trace"] == 7 else s for s in spans]),
                                          timeout=10)
    assert resp.partial_success.rejected_spans == 5
    st = pipeline.stats()
    assert (st["spans_received"], st["spans_accepted"], st["spans_rejected"]) == (14, 4, 10)
    complete_all(pipeline)
    for t in ("00000000000000000000000000000007", "00000000000000000000000000000008"):
        tf = store.trace_features(t)
        assert tf.n_spans == 2 and tf.duration_ms == 10.0
        assert tf.entry == "a:" + "x" * 200  # the huge http.route is truncated, not rejected


def test_grpc_garbage_is_invalid_argument(receivers, pipeline):
    g, _ = receivers
    with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as ei:
            call(b"\xff\xff\xff garbage", timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid OTLP" in ei.value.details()
    assert pipeline.stats()["requests_invalid"] == 1


def test_grpc_accepts_requests_beyond_4mib(receivers, pipeline, store):
    """A ~9k-span request from a collector's batch exporter is larger than grpcio's default 4 MiB limit."""
    g, _ = receivers
    big = "v" * 400
    spans = [{"service": "bulk", "trace": 1000 + t, "span": 1, "name": "GET /bulk", "kind": SERVER,
              "start_ms": 0, "end_ms": 10, "attrs": {"note": big}} for t in range(9000)]
    req = request(spans)
    assert req.ByteSize() > 4 * 1024 * 1024
    with grpc.insecure_channel(f"127.0.0.1:{g.port}",
                               options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        resp = TraceServiceStub(ch).Export(req, timeout=30, compression=grpc.Compression.Gzip)
    assert not resp.HasField("partial_success")
    assert pipeline.stats()["spans_accepted"] == 9000
    complete_all(pipeline)
    assert store.counts()["traces"] == 9000


def test_chunked_deflate_keepalive_and_bad_length(receivers, pipeline):
    import socket
    import zlib

    _, h = receivers
    body = request([{"service": "a", "trace": 300, "span": 1, "name": "x", "kind": SERVER, "start_ms": 0,
                     "end_ms": 5}]).SerializeToString()
    # deflate body, then a second request on the same keep-alive connection
    con = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
    for enc, data in (("deflate", zlib.compress(body)), ("identity", body)):
        con.request("POST", "/v1/traces", body=data,
                    headers={"Content-Type": "application/x-protobuf", "Content-Encoding": enc})
        r = con.getresponse()
        r.read()
        assert r.status == 200
    # chunked transfer encoding
    con.putrequest("POST", "/v1/traces")
    con.putheader("Content-Type", "application/x-protobuf")
    con.putheader("Transfer-Encoding", "chunked")
    con.endheaders()
    half = len(body) // 2
    for part in (body[:half], body[half:]):
        con.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    con.send(b"0\r\n\r\n")
    r = con.getresponse()
    r.read()
    assert r.status == 200
    con.close()
    # a nonsense Content-Length is a 400, not a traceback
    with socket.create_connection(("127.0.0.1", h.port), timeout=10) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                  b"Content-Length: lots\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert pipeline.stats()["spans_accepted"] == 3


def test_http_concurrency_is_bounded(make_pipeline):
    import socket

    p = make_pipeline(grpc_workers=1)  # 4 request slots
    h = OtlpHttpReceiver(p, "127.0.0.1:0").start()
    stalled = []
    try:
        for _ in range(4):  # four clients announce a body and never send it: they hold the slots
            s = socket.create_connection(("127.0.0.1", h.port), timeout=10)
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: 100\r\n\r\n")
            stalled.append(s)
        time.sleep(0.3)
        status, headers, _ = post(h.port, b"")
        assert status == 503 and headers["Retry-After"] == "1"
    finally:
        for s in stalled:
            s.close()
    time.sleep(0.3)  # the stalled handlers see EOF and free their slots
    ok = request([{"service": "a", "span": 1, "name": "x", "kind": SERVER, "start_ms": 0, "end_ms": 5}])
    assert post(h.port, ok.SerializeToString())[0] == 200
    h.stop(0)


def test_grpc_exporter_on_the_http_port_is_counted_and_explained(receivers, pipeline, caplog):
    """A gRPC exporter pointed at the HTTP port used to fail with nothing counted or logged on our side."""
    _, h = receivers
    with grpc.insecure_channel(f"127.0.0.1:{h.port}") as channel, caplog.at_level("WARNING"):
        with pytest.raises(grpc.RpcError):
            TraceServiceStub(channel).Export(request([{"service": "a", "span": 1, "name": "x", "kind": SERVER,
                                                        "start_ms": 0, "end_ms": 5}]), timeout=5)
        deadline = time.monotonic() + 5
        while pipeline.stats()["requests_invalid"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert pipeline.stats()["requests_invalid"] >= 1 and pipeline.stats()["spans_accepted"] == 0
    assert "OTLP gRPC exporters go to the OTLP gRPC receiver" in caplog.text
    assert post(h.port, b"{}", "application/json")[0] == 200  # and the port still serves HTTP/1.1
