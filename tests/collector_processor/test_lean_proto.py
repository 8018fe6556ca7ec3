"""collector_processor.lean_proto: the lean request view and wire helpers against the real OTLP protobuf classes."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from collector_processor.lean_proto import LeanRequest, _fields, kv_key, kv_string, status_code
from tests.support.otlp_build import CLIENT, SERVER, request


def full_request() -> ExportTraceServiceRequest:
    req = request([
        {"service": "web", "trace": 1, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0, "end_ms": 30,
         "attrs": {"http.route": "/", "http.method": "GET"}},
        {"service": "web", "trace": 1, "span": 2, "parent": 1, "name": "call db", "kind": CLIENT, "start_ms": 5,
         "end_ms": 20, "attrs": {"peer.service": "db"}, "error": True},
    ])
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="retries", value=AnyValue(int_value=3))
    span.events.add(name="an event the lean view does not declare", time_unix_nano=7)
    return req


def test_the_lean_view_reads_the_declared_fields_and_keeps_the_rest() -> None:
    full = full_request()
    wire = full.SerializeToString()
    lean = LeanRequest.FromString(wire)
    for rs_full, rs_lean in zip(full.resource_spans, lean.resource_spans, strict=True):
        assert list(rs_lean.resource.attributes) == [a.SerializeToString() for a in rs_full.resource.attributes]
        spans_full = [s for ss in rs_full.scope_spans for s in ss.spans]
        spans_lean = [s for ss in rs_lean.scope_spans for s in ss.spans]
        assert len(spans_lean) == len(spans_full) == 2
        for f, s in zip(spans_full, spans_lean, strict=True):
            # the name stays raw bytes: decoding (invalid UTF-8 -> U+FFFD) is the decoder's job
            assert (s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind) == (
                f.trace_id, f.span_id, f.parent_span_id, f.name.encode(), f.kind)
            assert (s.start_time_unix_nano, s.end_time_unix_nano) == (f.start_time_unix_nano, f.end_time_unix_nano)
            assert list(s.attributes) == [a.SerializeToString() for a in f.attributes]
            assert status_code(s.status) == f.status.code
    assert [status_code(s.status) for ss in lean.resource_spans[0].scope_spans for s in ss.spans] == [0, 2]
    assert ExportTraceServiceRequest.FromString(lean.SerializeToString()) == full  # unknown fields survive


def test_fields_walks_every_wire_type_and_refuses_broken_input() -> None:
    kv = KeyValue(key="k", value=AnyValue(double_value=1.5)).SerializeToString()
    fields = list(_fields(kv))
    assert [(n, w) for n, w, _ in fields] == [(1, 2), (2, 2)] and fields[0][2] == b"k"
    inner = list(_fields(fields[1][2]))
    assert inner[0][:2] == (4, 1) and len(inner[0][2]) == 8  # double: 64-bit
    assert list(_fields(Status(code=2, message="x").SerializeToString()))[-1] == (3, 0, 2)  # varint
    assert list(_fields(b"\x0d\x01\x02\x03\x04")) == [(1, 5, b"\x01\x02\x03\x04")]  # fixed32
    for broken, message in [(b"\x0a\x05ab", "truncated field"), (b"\x08\xff", "truncated varint"),
                            (b"\x08" + b"\xff" * 10 + b"\x01", "varint too long"), (b"\x0b", "unsupported wire type 3")]:
        with pytest.raises(ValueError, match=message):
            list(_fields(broken))


def test_kv_key_and_string_on_real_and_malformed_key_values() -> None:
    short = KeyValue(key="http.route", value=AnyValue(string_value="/cart/{id}")).SerializeToString()
    long_key = "k" * 300
    long = KeyValue(key=long_key, value=AnyValue(string_value="ünïcode ✓")).SerializeToString()
    number = KeyValue(key="n", value=AnyValue(int_value=5)).SerializeToString()
    assert (kv_key(short), kv_string(short)) == (b"http.route", "/cart/{id}")
    assert (kv_key(long), kv_string(long)) == (long_key.encode(), "ünïcode ✓")
    assert (kv_key(number), kv_string(number)) == (b"n", "")  # not a string value
    value_first = AnyValue(string_value="v").SerializeToString()
    reordered = b"\x12" + bytes([len(value_first)]) + value_first + b"\x0a\x01z"  # value before key: still found
    assert (kv_key(reordered), kv_string(reordered)) == (b"z", "v")
    for junk in (b"", b"\xff", b"\x12\x09abc"):
        assert kv_key(junk) == b"" and kv_string(junk) == ""


def test_status_code_of_serialized_statuses() -> None:
    for code in (0, 1, 2):
        assert status_code(Status(code=code, message="m").SerializeToString()) == code
    assert status_code(b"") == 0 and status_code(b"\x18") == 0  # missing, truncated
