"""collector_processor.otlp_json: OTLP/JSON bodies (hex ids, integer enums, string int64s) to protobuf and back."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_processor.otlp_decode import DecodeFailure
from collector_processor.otlp_json import message_to_json, parse_json_request
from tests.support.otlp_build import CLIENT, SERVER, request


def original() -> ExportTraceServiceRequest:
    req = request([
        {"service": "web", "trace": 0xABCDEF, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0, "end_ms": 9,
         "attrs": {"http.route": "/"}},
        {"service": "db", "trace": 0xABCDEF, "span": 2, "parent": 1, "name": "SELECT", "kind": CLIENT,
         "start_ms": 1, "end_ms": 5, "error": True},
    ])
    link = req.resource_spans[1].scope_spans[0].spans[0].links.add()
    link.trace_id, link.span_id = (7).to_bytes(16, "big"), (8).to_bytes(8, "big")
    return req


def otlp_json(req: ExportTraceServiceRequest, snake: bool = False) -> dict:
    """OTLP/JSON as an exporter writes it: the protobuf JSON mapping with ids as hex instead of base64."""
    doc = json_format.MessageToDict(req, preserving_proto_field_name=snake)

    def hexify(obj: object) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
                    obj[k] = base64.b64decode(v).hex()
                else:
                    hexify(v)
        elif isinstance(obj, list):
            for v in obj:
                hexify(v)

    hexify(doc)
    return doc


@pytest.mark.parametrize("snake", [False, True])
def test_an_exporters_json_parses_to_the_same_request(snake: bool) -> None:
    doc = otlp_json(original(), snake)
    span = doc["resourceSpans" if not snake else "resource_spans"][0]["scopeSpans" if not snake else "scope_spans"][0]
    assert span["spans"][0]["traceId" if not snake else "trace_id"] == "00000000000000000000000000abcdef"
    assert parse_json_request(json.dumps(doc).encode()) == original()


def test_integer_enums_numeric_int64s_and_unknown_fields_are_accepted() -> None:
    doc = otlp_json(original())
    sp = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    sp["kind"] = 2  # SPAN_KIND_SERVER as an integer
    sp["startTimeUnixNano"] = int(sp["startTimeUnixNano"])  # a JSON number instead of a string
    sp["someFutureField"] = {"x": 1}
    doc["resourceSpans"][0]["alsoUnknown"] = [1, 2]
    assert parse_json_request(json.dumps(doc).encode()) == original()


def test_an_id_that_is_not_hex_becomes_empty_and_the_rest_is_kept() -> None:
    doc = otlp_json(original())
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "not-hex!"
    req = parse_json_request(json.dumps(doc).encode())
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert spans[0].span_id == b"" and spans[1].span_id == (2).to_bytes(8, "big")


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b'{"resourceSpans": 5}', "not a valid OTLP/JSON ExportTraceServiceRequest"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', "not a valid OTLP/JSON"),
    (b'{"resourceSpans": [{"scopeSpans": "x"}]}', "not a valid OTLP/JSON"),
])
def test_bad_bodies_are_decode_failures_with_a_readable_message(body: bytes, message: str) -> None:
    with pytest.raises(DecodeFailure, match=message):
        parse_json_request(body)


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
def test_a_deeply_nested_body_is_a_decode_failure(body: bytes) -> None:
    with pytest.raises(DecodeFailure):
        parse_json_request(body)


def test_an_empty_object_is_an_empty_request() -> None:
    assert parse_json_request(b"{}") == ExportTraceServiceRequest()


def test_responses_are_written_in_lower_camel_case() -> None:
    resp = ExportTraceServiceResponse()
    resp.partial_success.rejected_spans = 3
    resp.partial_success.error_message = "3 spans without ids"
    body = message_to_json(resp)
    assert json.loads(body) == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "3 spans without ids"}}
    assert json_format.Parse(body, ExportTraceServiceResponse()) == resp
