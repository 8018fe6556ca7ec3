"""Lossless decoding: invalid UTF-8 in a span name, service name or attribute becomes U+FFFD and the span is
stored beside its valid neighbours (the Collector passes such data on; rejecting the batch would lose them)."""

from __future__ import annotations

import json

import grpc

from tests.support.otlp_build import SERVER, request
from tests.support.pipeline import complete_all

from .test_otlp_http_json import otlp_json_doc, post

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _spans(trace: int) -> list[dict]:
    # placeholder names (same length as the bad bytes) patched into invalid UTF-8 after serialising
    return [
        {"service": "shop", "trace": trace, "span": 1, "name": "GET /home", "kind": SERVER, "start_ms": 0,
         "end_ms": 40},
        {"service": "shop", "trace": trace, "span": 2, "parent": 1, "name": "load QQQQ", "start_ms": 5,
         "end_ms": 25},
        {"service": "shop", "trace": trace, "span": 3, "parent": 1, "name": "render", "start_ms": 26, "end_ms": 38},
        {"service": "shop", "trace": trace + 1000, "span": 9, "name": "GET /ok", "kind": SERVER, "start_ms": 0,
         "end_ms": 10},
    ]


def _invalid(trace: int) -> bytes:
    raw = request(_spans(trace)).SerializeToString()
    assert raw.count(b"QQQQ") == 1
    return raw.replace(b"QQQQ", b"\xff\xfe\xc3(")  # two invalid bytes and a broken 2-byte sequence


def _assert_stored(store, trace: int) -> None:
    tf = store.trace_features(f"{trace:032x}")
    assert tf is not None and tf.n_spans == 3 and tf.complete
    names = set(tf.nodes)
    assert "shop:render" in names
    bad = [n for n in names if n.startswith("shop:load ")]
    assert bad and "\ufffd" in bad[0], names
    neighbour = store.trace_features(f"{trace + 1000:032x}")
    assert neighbour is not None and neighbour.entry == "shop:GET /ok"


def test_invalid_utf8_over_grpc_and_http_protobuf(receivers, pipeline, store):
    g, h = receivers
    with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
        resp = ch.unary_unary(EXPORT)(_invalid(21), timeout=10)
    assert resp == b""  # OK, no partial success: nothing rejected
    status, _, body = post(h.port, _invalid(22))
    assert status == 200 and body == b""
    st = pipeline.stats()
    assert st["spans_accepted"] == 8 and st["spans_rejected"] == 0 and st["requests_invalid"] == 0
    complete_all(pipeline)
    _assert_stored(store, 21)
    _assert_stored(store, 22)


def test_invalid_utf8_and_lone_surrogates_over_http_json(receivers, pipeline, store):
    _, h = receivers
    doc = otlp_json_doc()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["name"] = "SELECT QQQQ"
    body = json.dumps(doc).encode().replace(b"QQQQ", b"\xff\\ud800x")  # raw invalid byte + lone surrogate
    status, _, answer = post(h.port, body, "application/json")
    assert status == 200 and json.loads(answer) == {}
    complete_all(pipeline)
    tf = store.trace_features("5b8efff798038103d269b633813fc60c")
    assert tf is not None and tf.n_spans == 2 and tf.entry == "web:GET /home"
    assert "postgresql:SELECT \ufffd\ufffdx" in tf.nodes, set(tf.nodes)
