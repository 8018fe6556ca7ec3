"""Wrapper spans: a childless INTERNAL span that envelops same-service sibling calls adopts them (the gateway's
``FilteringWebHandler.handle`` pattern of the Train-Ticket traces). Traces come from the real OTel SDK over real
OTLP/gRPC with explicit span times, so every expected value is exact."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context

from collector_processor import OtlpGrpcReceiver, Pipeline
from tests.support.pipeline import complete_all

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
ROOT = "gateway:GET /api/orders"
WRAP = "gateway:FilteringWebHandler.handle"
CALL_O, SRV_O = "net:orders:GET /orders", "orders:GET /orders"
CALL_P, SRV_P = "net:pay:POST /pay", "pay:POST /pay"


class Sdk:
    """One TracerProvider + OTLP/gRPC exporter per service; spans with explicit start and end (ms from t0)."""

    def __init__(self, port: int, services: tuple[str, ...]) -> None:
        self.tp = {}
        for svc in services:
            tp = TracerProvider(resource=Resource.create({"service.name": svc}))
            tp.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=20)))
            self.tp[svc] = tp
        self.opened: list = []

    def span(self, svc, name, kind, parent, a, b, attrs=None):
        ctx = set_span_in_context(parent) if parent is not None else None
        sp = self.tp[svc].get_tracer("t").start_span(name, context=ctx, kind=kind, start_time=T0 + int(a * MS),
                                                      attributes=attrs or {})
        self.opened.append((sp, T0 + int(b * MS)))
        return sp

    def finish(self) -> str:
        for sp, end in reversed(self.opened):
            sp.end(end_time=end)
        tid = format(self.opened[0][0].get_span_context().trace_id, "032x")
        self.opened = []
        for tp in self.tp.values():
            assert tp.force_flush(20_000)
        return tid

    def shutdown(self) -> None:
        for tp in self.tp.values():
            tp.shutdown()


@contextmanager
def collector(make_pipeline, **kw) -> Iterator[tuple[Pipeline, Sdk]]:
    p = make_pipeline(**kw)
    rx = OtlpGrpcReceiver(p, "127.0.0.1:0").start()
    sdk = Sdk(rx.port, ("gateway", "orders", "pay", "agent"))
    try:
        yield p, sdk
    finally:
        sdk.shutdown()
        rx.stop(0)


def gateway_request(sdk: Sdk) -> str:
    """Root 0-100; wrapper leaf 2-98; two sequential client calls under the ROOT, inside the wrapper."""
    root = sdk.span("gateway", "GET /api/orders", SpanKind.SERVER, None, 0, 100,
                    {"http.route": "/api/orders", "http.request.method": "GET"})
    sdk.span("gateway", "FilteringWebHandler.handle", SpanKind.INTERNAL, root, 2, 98)
    c1 = sdk.span("gateway", "GET", SpanKind.CLIENT, root, 10, 40, {"http.request.method": "GET"})
    sdk.span("orders", "GET /orders", SpanKind.SERVER, c1, 12, 38,
             {"http.route": "/orders", "http.request.method": "GET"})
    c2 = sdk.span("gateway", "POST", SpanKind.CLIENT, root, 50, 90, {"http.request.method": "POST"})
    sdk.span("pay", "POST /pay", SpanKind.SERVER, c2, 55, 85, {"http.route": "/pay", "http.request.method": "POST"})
    return sdk.finish()


def test_wrapper_adopts_the_calls_it_envelops(make_pipeline, store):
    with collector(make_pipeline) as (p, sdk):
        tid = gateway_request(sdk)
        assert complete_all(p) == 1
        stats = p.stats()
    assert stats["spans_reparented"] == 2 and stats["spans_stored"] == 6
    cg = store.graph(ROOT)
    assert set(cg.call_edges) == {(ROOT, WRAP), (WRAP, CALL_O), (CALL_O, SRV_O), (WRAP, CALL_P), (CALL_P, SRV_P)}
    # the two adopted calls ran one after the other inside the wrapper; the root has one child left
    assert cg.mechanisms() == {ROOT: "sum", WRAP: "sum", CALL_O: "sum", CALL_P: "sum"}
    tf = store.trace_features(tid)
    assert tf.complete
    # wrapper own time = 96 - (30 + 40) = 26; root own = 100 - 96 = 4; the call nodes keep their gaps
    expected = {ROOT: (100, 4), WRAP: (96, 26), CALL_O: (30, 4), SRV_O: (26, 26), CALL_P: (40, 10), SRV_P: (30, 30)}
    for node, (lat, own) in expected.items():
        f = tf.nodes[node]
        assert (f.latency_ms, f.own_ms, f.count) == pytest.approx((lat, own, 1)), node
    # the latency identity holds at the wrapper with the sum structure
    w = tf.nodes[WRAP]
    assert w.own_ms + tf.nodes[CALL_O].latency_ms + tf.nodes[CALL_P].latency_ms == pytest.approx(w.latency_ms)


def test_knob_off_keeps_the_wrapper_a_leaf(make_pipeline, store):
    with collector(make_pipeline, reparent_wrappers=False) as (p, sdk):
        tid = gateway_request(sdk)
        assert complete_all(p) == 1
        stats = p.stats()
    assert stats["spans_reparented"] == 0
    cg = store.graph(ROOT)
    assert set(cg.call_edges) == {(ROOT, WRAP), (ROOT, CALL_O), (CALL_O, SRV_O), (ROOT, CALL_P), (CALL_P, SRV_P)}
    assert cg.mechanisms() == {ROOT: "max", CALL_O: "sum", CALL_P: "sum"}  # wrapper overlaps both calls
    tf = store.trace_features(tid)
    assert (tf.nodes[WRAP].latency_ms, tf.nodes[WRAP].own_ms) == pytest.approx((96, 96))
    assert tf.nodes[ROOT].own_ms == pytest.approx(4)


def test_partial_overlap_other_service_and_non_leaf_stay_unchanged(make_pipeline, store):
    """Not adopted: a call only partly inside the leaf, a span of another service inside it, anything inside a
    span that has children of its own, and a client span (only INTERNAL/unspecified spans wrap)."""
    with collector(make_pipeline) as (p, sdk):
        root = sdk.span("gateway", "GET /api/orders", SpanKind.SERVER, None, 0, 100,
                        {"http.route": "/api/orders", "http.request.method": "GET"})
        sdk.span("gateway", "check", SpanKind.INTERNAL, root, 5, 30)
        c1 = sdk.span("gateway", "GET", SpanKind.CLIENT, root, 20, 45, {"http.request.method": "GET"})  # partial
        sdk.span("orders", "GET /orders", SpanKind.SERVER, c1, 22, 43,
                 {"http.route": "/orders", "http.request.method": "GET"})
        sdk.span("gateway", "audit", SpanKind.INTERNAL, root, 50, 70)
        sdk.span("agent", "flush", SpanKind.INTERNAL, root, 55, 65)  # inside "audit", another service
        route = sdk.span("gateway", "route", SpanKind.INTERNAL, root, 72, 99)  # has a child: not a wrapper
        sdk.span("gateway", "match", SpanKind.INTERNAL, route, 73, 75)
        sdk.span("gateway", "log", SpanKind.INTERNAL, root, 80, 90)  # inside "route"
        sdk.span("gateway", "SELECT", SpanKind.CLIENT, root, 0, 4, {"db.system": "mysql"})  # a client leaf
        sdk.span("gateway", "tick", SpanKind.INTERNAL, root, 1, 3)  # inside the client leaf
        tid = sdk.finish()
        assert complete_all(p) == 1
        stats = p.stats()
    assert stats["spans_reparented"] == 0
    cg = store.graph(ROOT)
    assert set(cg.call_edges) == {
        (ROOT, "gateway:check"), (ROOT, CALL_O), (CALL_O, SRV_O), (ROOT, "gateway:audit"), (ROOT, "agent:flush"),
        (ROOT, "gateway:route"), ("gateway:route", "gateway:match"), (ROOT, "gateway:log"),
        (ROOT, "mysql:SELECT"), (ROOT, "gateway:tick")}
    tf = store.trace_features(tid)
    for node, own in (("gateway:check", 25), ("gateway:audit", 20), ("agent:flush", 10), ("gateway:route", 25),
                      ("mysql:SELECT", 4)):
        assert tf.nodes[node].own_ms == pytest.approx(own), node


def test_nested_wrappers_chain_and_identical_intervals_do_not_cycle(make_pipeline, store):
    """Two nested wrapper leaves chain (outer -> inner -> call); two identical leaves: the first adopts the other."""
    with collector(make_pipeline) as (p, sdk):
        root = sdk.span("gateway", "GET /api/orders", SpanKind.SERVER, None, 0, 100,
                        {"http.route": "/api/orders", "http.request.method": "GET"})
        sdk.span("gateway", "outer", SpanKind.INTERNAL, root, 1, 99)
        sdk.span("gateway", "inner", SpanKind.INTERNAL, root, 5, 60)
        c1 = sdk.span("gateway", "GET", SpanKind.CLIENT, root, 10, 40, {"http.request.method": "GET"})
        sdk.span("orders", "GET /orders", SpanKind.SERVER, c1, 12, 38,
                 {"http.route": "/orders", "http.request.method": "GET"})
        sdk.span("gateway", "twin-a", SpanKind.INTERNAL, root, 70, 80)
        sdk.span("gateway", "twin-b", SpanKind.INTERNAL, root, 70, 80)
        tid = sdk.finish()
        assert complete_all(p) == 1
        stats = p.stats()
    assert stats["spans_reparented"] == 4  # inner and twin-a by outer, the call by inner, twin-b by twin-a
    cg = store.graph(ROOT)
    edges = set(cg.call_edges)
    assert {(ROOT, "gateway:outer"), ("gateway:outer", "gateway:inner"), ("gateway:inner", CALL_O),
            (CALL_O, SRV_O)} <= edges
    # identical intervals: the earlier-received twin wraps the other (order of the SDK's export), never both
    twins = {e for e in edges if "twin" in e[1]}
    assert twins in ({("gateway:outer", "gateway:twin-a"), ("gateway:twin-a", "gateway:twin-b")},
                     {("gateway:outer", "gateway:twin-b"), ("gateway:twin-b", "gateway:twin-a")})
    tf = store.trace_features(tid)
    assert tf.complete and stats["spans_in_cycles"] == 0
    # outer: 98 - inner 55 - twin 10 = 33; inner: 55 - 30 = 25
    assert tf.nodes["gateway:outer"].own_ms == pytest.approx(33)
    assert tf.nodes["gateway:inner"].own_ms == pytest.approx(25)
    assert tf.nodes[ROOT].own_ms == pytest.approx(2)


def test_async_wrapper_closing_just_before_its_call_is_repaired(make_pipeline, store):
    """Train-Ticket's shape: the gateway's handler returns just before the client span it wraps is closed. Up to
    ``wrapper_slack`` (5 %) of the call outside the wrapper is adopted (and is not clock skew); more is not."""
    with collector(make_pipeline) as (p, sdk):
        tids = []
        for wrap_end in (90, 80):  # call 5-92 (87 ms): 2 ms outside (2.3 %), then 12 ms outside (13.8 %)
            root = sdk.span("gateway", "GET /api/orders", SpanKind.SERVER, None, 0, 100,
                            {"http.route": "/api/orders", "http.request.method": "GET"})
            sdk.span("gateway", "FilteringWebHandler.handle", SpanKind.INTERNAL, root, 1, wrap_end)
            c1 = sdk.span("gateway", "GET", SpanKind.CLIENT, root, 5, 92, {"http.request.method": "GET"})
            sdk.span("orders", "GET /orders", SpanKind.SERVER, c1, 7, 90,
                     {"http.route": "/orders", "http.request.method": "GET"})
            tids.append(sdk.finish())
        assert complete_all(p) == 2
        stats = p.stats()
    assert stats["spans_reparented"] == 1 and stats["spans_clock_skew"] == 0
    adopted, kept = (store.trace_features(t) for t in tids)
    # adopted: wrapper own = 89 - (90 - 5) (the call clipped to the wrapper); root own = 100 - 89
    assert adopted.nodes[WRAP].own_ms == pytest.approx(4) and adopted.nodes[ROOT].own_ms == pytest.approx(11)
    assert kept.nodes[WRAP].own_ms == pytest.approx(79) and kept.nodes[ROOT].own_ms == pytest.approx(100 - 91)
    # both shapes feed the entry's graph evidence (edges are counted per trace)
    assert {(ROOT, WRAP), (WRAP, CALL_O), (ROOT, CALL_O)} <= set(store.graph(ROOT).call_edges)
