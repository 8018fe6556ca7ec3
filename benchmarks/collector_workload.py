"""Synthetic OTLP trace workload for the collector benchmarks: a shop-like app whose traces look like what
OpenTelemetry SDK instrumentation emits (server/client pairs with semantic-convention attributes, database
calls with statements, internal spans), with fresh random ids, serialised as ExportTraceServiceRequest bytes."""

from __future__ import annotations

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

MS = 1_000_000
SERVER, CLIENT, INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
# (service, route) of the downstream calls each checkout makes; each call = CLIENT span + SERVER span + db span
CALLS = [("auth", "/login"), ("cart", "/cart/{id}"), ("price", "/price/{sku}"), ("stock", "/stock/{sku}"),
         ("stock", "/stock/{sku}"), ("shipping", "/quote"), ("user", "/users/{id}"), ("reco", "/recommend")]


def _kv(k: str, v: str) -> KeyValue:
    return KeyValue(key=k, value=AnyValue(string_value=v))


def _attrs(route: str) -> list[KeyValue]:
    """The attributes an HTTP server span of the SDK instrumentation typically carries."""
    return [_kv("http.route", route), _kv("http.request.method", "GET"), _kv("url.scheme", "http"),
            _kv("server.address", "10.0.0.12"), _kv("network.protocol.version", "1.1"),
            _kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) bench"),
            KeyValue(key="http.response.status_code", value=AnyValue(int_value=200))]


def make_requests(n_spans: int, spans_per_request: int = 2048, seed: int = 0) -> list[bytes]:
    """Serialized requests with about ``n_spans`` spans in traces of 26 spans, batched per request."""
    rng = np.random.default_rng(seed)
    per_trace = 2 + 3 * len(CALLS)
    n_traces = max(1, n_spans // per_trace)
    ids = rng.bytes(n_traces * (16 + 8 * per_trace))
    traces_per_req = max(1, spans_per_request // per_trace)
    out = []
    t0 = 1_700_000_000_000_000_000
    pos = 0
    for r0 in range(0, n_traces, traces_per_req):
        req = ExportTraceServiceRequest()
        scopes = {}
        for svc in ["frontend"] + sorted({c[0] for c in CALLS}):
            rs = req.resource_spans.add()
            rs.resource.attributes.extend([_kv("service.name", svc), _kv("service.version", "1.4.2"),
                                           _kv("telemetry.sdk.language", "python"),
                                           _kv("host.name", f"{svc}-7d9f8-abcde")])
            sc = rs.scope_spans.add()
            sc.scope.name = "opentelemetry.instrumentation.flask"
            scopes[svc] = sc.spans
        for t in range(r0, min(r0 + traces_per_req, n_traces)):
            tid = ids[pos:pos + 16]
            pos += 16
            sids = [ids[pos + 8 * k: pos + 8 * k + 8] for k in range(per_trace)]
            pos += 8 * per_trace
            start = t0 + t * 10 * MS
            jit = rng.integers(0, 3 * MS, size=len(CALLS) + 1)
            fe = scopes["frontend"]
            root = fe.add(trace_id=tid, span_id=sids[0], name="GET /checkout", kind=SERVER,
                          start_time_unix_nano=start, end_time_unix_nano=start + 100 * MS + int(jit[0]))
            root.attributes.extend(_attrs("/checkout"))
            k = 1
            at = start + 2 * MS
            for c, (svc, route) in enumerate(CALLS):
                d = 8 * MS + int(jit[c + 1])
                cl = fe.add(trace_id=tid, span_id=sids[k], parent_span_id=sids[0], name="GET", kind=CLIENT,
                            start_time_unix_nano=at, end_time_unix_nano=at + d + 2 * MS)
                cl.attributes.extend([_kv("http.request.method", "GET"), _kv("server.address", svc)])
                sv = scopes[svc].add(trace_id=tid, span_id=sids[k + 1], parent_span_id=sids[k], name=f"GET {route}",
                                     kind=SERVER, start_time_unix_nano=at + MS, end_time_unix_nano=at + MS + d)
                sv.attributes.extend(_attrs(route))
                db = scopes[svc].add(trace_id=tid, span_id=sids[k + 2], parent_span_id=sids[k + 1],
                                     name=f"SELECT {svc}", kind=CLIENT, start_time_unix_nano=at + 2 * MS,
                                     end_time_unix_nano=at + 2 * MS + d // 2)
                db.attributes.extend([_kv("db.system", "postgresql"), _kv("db.name", svc),
                                      _kv("db.statement", f"SELECT * FROM {svc} WHERE id = $1 AND tenant = $2")])
                k += 3
                at += d + 3 * MS
            fe.add(trace_id=tid, span_id=sids[k], parent_span_id=sids[0], name="render", kind=INTERNAL,
                   start_time_unix_nano=at, end_time_unix_nano=at + 2 * MS)
        out.append(req.SerializeToString())
    return out
