"""OTLP/JSON <-> protobuf messages.

OTLP/JSON differs from the canonical protobuf JSON mapping: trace and span ids are hex strings (the stock
parser would read them as base64), enum values may be integers and 64-bit integers may be strings or numbers;
unknown fields must be ignored. We rewrite the id fields to base64 and let ``ParseDict`` do the rest.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_processor.otlp_decode import DecodeFailure

_SURROGATE = re.compile("[\ud800-\udfff]")
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_to_b64(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""  # not hex: the span gets an empty id and is rejected as invalid (counted, others kept)
    return base64.b64encode(raw).decode("ascii")


def _fix_ids(obj: dict) -> None:
    for k in _ID_KEYS:
        if k in obj:
            obj[k] = _hex_to_b64(obj[k])


def _items(obj: Any, *keys: str) -> list:
    if not isinstance(obj, dict):
        return []
    for k in keys:
        v = obj.get(k)
        if isinstance(v, list):
            return v
    return []


def _replace_surrogates(obj: Any) -> Any:
    """``obj`` with lone UTF-16 surrogates (``"\\ud800"`` escapes, not encodable as UTF-8) replaced by U+FFFD."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_surrogates(v) for v in obj]
    return obj


def parse_json_request(body: bytes) -> ExportTraceServiceRequest:
    """Decode an OTLP/JSON ExportTraceServiceRequest, raising DecodeFailure with a readable message.

    Lossless: invalid UTF-8 bytes and lone surrogate escapes in strings become U+FFFD, as the Collector keeps
    such data; only a body that is not JSON at all is refused."""
    try:
        doc = json.loads(body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body)
    except ValueError as exc:
        raise DecodeFailure(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeFailure("OTLP/JSON request body must be a JSON object")
    for rs in _items(doc, "resourceSpans", "resource_spans"):
        for ss in _items(rs, "scopeSpans", "scope_spans"):
            for sp in _items(ss, "spans"):
                if isinstance(sp, dict):
                    _fix_ids(sp)
                    for link in _items(sp, "links"):
                        if isinstance(link, dict):
                            _fix_ids(link)
    req = ExportTraceServiceRequest()
    try:
        try:
            json_format.ParseDict(doc, req, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeEncodeError) as exc:
            if "surrogate" not in str(exc):
                raise
            req.Clear()  # rare: a lone surrogate escape; retry on a cleaned copy
            json_format.ParseDict(_replace_surrogates(doc), req, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeFailure(f"request body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return req


def message_to_json(msg: Message) -> bytes:
    """OTLP/JSON encoding of a response or Status message (lowerCamelCase keys)."""
    return json_format.MessageToJson(msg, indent=None).encode("utf-8")
