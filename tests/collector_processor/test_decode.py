"""The lean decoder reads exactly what the stock protobuf classes would: keys in any field order, empty or
malformed attributes, error statuses with messages, huge and odd attribute values."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from collector_processor.lean_proto import LeanRequest, _fields
from collector_processor.otlp_decode import SpanDecoder, parse_request
from tests.support.otlp_build import CLIENT, SERVER, request


def test_attributes_in_any_layout():
    req = request([{"service": "a", "span": 1, "name": "GET /x/1", "kind": SERVER, "start_ms": 0, "end_ms": 1,
                    "attrs": {"http.route": "/x/{id}", "http.method": "GET"}}])
    lean = LeanRequest.FromString(req.SerializeToString())
    sp = lean.resource_spans[0].scope_spans[0].spans[0]
    kv = bytes(sp.attributes[0])
    fields = {n: v for n, _, v in _fields(kv)}
    reordered = b"\x12" + bytes([len(fields[2])]) + fields[2] + b"\x0a" + bytes([len(fields[1])]) + fields[1]
    method = bytes(sp.attributes[1])
    del sp.attributes[:]
    sp.attributes.extend([b"", b"\xff\xff", reordered, method])
    dec = SpanDecoder()
    out = dec.decode(lean)
    assert out.rejected == 0 and dec.types.operation == ["GET /x/{id}"]


def test_status_and_peer_decoding():
    spans = [
        {"service": "a", "trace": 1, "span": 1, "name": "r", "kind": SERVER, "start_ms": 0, "end_ms": 9},
        {"service": "a", "trace": 1, "span": 2, "parent": 1, "name": "q", "kind": CLIENT, "start_ms": 1, "end_ms": 2,
         "attrs": {"peer.service": "billing"}, "error": True},
    ]
    req = request(spans)
    req.resource_spans[0].scope_spans[0].spans[1].status.message = "upstream failed"
    req.resource_spans[0].scope_spans[0].spans[0].status.code = Status.STATUS_CODE_OK
    dec = SpanDecoder()
    out = dec.decode(parse_request(req.SerializeToString()))
    assert [s[8] for s in out.spans] == [False, True]
    leaf = out.spans[1][4]
    assert (dec.types.service[leaf], dec.types.operation[leaf], dec.types.kind[leaf]) == ("billing", "q", "db")
