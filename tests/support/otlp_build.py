"""Hand-built OTLP requests for collector tests (explicit ids and times, so every value is known)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER = (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT,
                                                Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_PRODUCER,
                                                Span.SPAN_KIND_CONSUMER)


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def request(spans: list[dict]) -> ExportTraceServiceRequest:
    """spans: dicts with service, trace, span, parent (int or None), name, kind, start_ms, end_ms, attrs, error."""
    req = ExportTraceServiceRequest()
    by_service: dict = {}
    for s in spans:
        svc = s.get("service")
        scope = by_service.get(svc)
        if scope is None:
            rs = req.resource_spans.add()
            if svc is not None:
                rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=svc))
            scope = rs.scope_spans.add()
            by_service[svc] = scope
        sp = scope.spans.add()
        t = s.get("trace", 1)
        sp.trace_id = t if isinstance(t, bytes) else tid(t)
        x = s["span"]
        sp.span_id = x if isinstance(x, bytes) else sid(x)
        p = s.get("parent")
        if p is not None:
            sp.parent_span_id = p if isinstance(p, bytes) else sid(p)
        sp.name = s.get("name", "op")
        sp.kind = s.get("kind", INTERNAL)
        sp.start_time_unix_nano = int(T0 + s["start_ms"] * MS)
        sp.end_time_unix_nano = int(T0 + s["end_ms"] * MS)
        for k, v in (s.get("attrs") or {}).items():
            sp.attributes.add(key=k, value=AnyValue(string_value=v))
        if s.get("error"):
            sp.status.code = Status.STATUS_CODE_ERROR
    return req
