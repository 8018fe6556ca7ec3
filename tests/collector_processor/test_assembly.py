"""Trace assembly rules: out-of-order arrival, duplicates, orphans, cycles, clock skew, missing service.name,
bounded memory with counted evictions, max wait without root, late spans re-opening a trace."""

from __future__ import annotations

import time

import pytest

from collector_processor.naming import normalise_operation, operation_of
from tests.support.otlp_build import CLIENT, SERVER, request
from tests.support.pipeline import complete_all


def chain(trace: int, base: int = 1, service: str = "svc") -> list[dict]:
    """root(0-100) -> client(10-60) -> server in 'db-api'(20-50) -> internal(25-35)."""
    return [
        {"service": service, "trace": trace, "span": base, "name": "GET /r", "kind": SERVER, "start_ms": 0, "end_ms": 100},
        {"service": service, "trace": trace, "span": base + 1, "parent": base, "name": "call", "kind": CLIENT,
         "start_ms": 10, "end_ms": 60},
        {"service": "api", "trace": trace, "span": base + 2, "parent": base + 1, "name": "GET /x", "kind": SERVER,
         "start_ms": 20, "end_ms": 50},
        {"service": "api", "trace": trace, "span": base + 3, "parent": base + 2, "name": "work", "start_ms": 25,
         "end_ms": 35},
    ]


def test_out_of_order_and_duplicates(pipeline, store):
    spans = chain(1)
    for s in reversed(spans):  # children first, root last, each in its own request
        pipeline.accept(request([s]))
    pipeline.accept(request(spans[1:3]))  # duplicates: idempotent
    complete_all(pipeline)
    st = pipeline.stats()
    assert st["spans_duplicate"] == 2 and st["traces_completed"] == 1 and st["traces_incomplete"] == 0
    tf = store.trace_features(f"{1:032x}")
    assert tf.n_spans == 4 and tf.complete
    assert tf.nodes["net:api:GET /x"].latency_ms == 50.0 and tf.nodes["net:api:GET /x"].gap_ms == 20.0
    assert tf.nodes["api:GET /x"].own_ms == 20.0 and tf.nodes["svc:GET /r"].own_ms == 50.0


def test_trace_waits_for_idle_time_after_root(pipeline, store):
    now = time.monotonic()
    pipeline.accept(request(chain(2)))
    assert pipeline.tick(now + 0.5) == 0  # root arrived, but not idle for 2 s yet
    assert pipeline.tick(now + pipeline.config.trace_timeout_s + 0.5) == 1
    assert store.trace_features(f"{2:032x}").complete


def test_rootless_trace_flushed_incomplete_after_max_wait(make_pipeline, store):
    p = make_pipeline(max_trace_wait_s=5.0)
    now = time.monotonic()
    p.accept(request(chain(3)[1:]))  # root never comes
    assert p.tick(now + 3) == 0       # idle but rootless: keeps waiting for the root
    assert p.tick(now + 6) == 1
    st = p.stats()
    assert st["traces_incomplete"] == 1
    tf = store.trace_features(f"{3:032x}")
    assert not tf.complete and tf.entry == "net:api:GET /x" and tf.n_spans == 3  # top orphan is the entry


def test_orphans_cycles_and_skew_are_counted_not_lost(pipeline, store):
    spans = chain(4)
    spans += [
        # orphan subtree: parent 99 never arrives
        {"service": "svc", "trace": 4, "span": 10, "parent": 99, "name": "lost child", "start_ms": 5, "end_ms": 6},
        # a cycle: 20 -> 21 -> 20
        {"service": "svc", "trace": 4, "span": 20, "parent": 21, "name": "c1", "start_ms": 1, "end_ms": 2},
        {"service": "svc", "trace": 4, "span": 21, "parent": 20, "name": "c2", "start_ms": 1, "end_ms": 2},
        # self-parent
        {"service": "svc", "trace": 4, "span": 22, "parent": 22, "name": "self", "start_ms": 1, "end_ms": 2},
        # clock skew: child ends after its parent
        {"service": "api", "trace": 4, "span": 30, "parent": 3, "name": "skewed", "start_ms": 45, "end_ms": 70},
    ]
    r = pipeline.accept(request(spans))
    assert r.rejected == 0
    complete_all(pipeline)
    st = pipeline.stats()
    assert st["spans_orphan"] == 1 and st["spans_in_cycles"] == 3 and st["spans_clock_skew"] == 1
    assert st["spans_stored"] == len(spans)
    tf = store.trace_features(f"{4:032x}")
    assert not tf.complete and tf.n_spans == len(spans)
    # the skewed child is clipped to its parent for own time: api busy 25-35 and 45-50 -> own 30 - 15 = 15
    assert tf.nodes["api:GET /x"].own_ms == pytest.approx(15.0)
    assert tf.nodes["api:skewed"].latency_ms == 25.0


def test_missing_service_name_is_unknown_service(pipeline, store):
    spans = chain(5)
    for s in spans:
        s["service"] = None
    pipeline.accept(request(spans))
    complete_all(pipeline)
    assert pipeline.stats()["spans_unknown_service"] == 4
    assert store.trace_features(f"{5:032x}").entry == "unknown_service:GET /r"


def test_bounded_memory_evicts_oldest_as_incomplete(make_pipeline, store):
    p = make_pipeline(max_buffered_traces=3, max_buffered_spans=1000)
    for t in range(10, 16):
        p.accept(request(chain(t)))
    p.tick(time.monotonic())  # assemble: 6 traces into room for 3
    st = p.stats()
    assert st["traces_evicted"] == 3 and st["buffered_traces"] == 3
    evicted = [store.trace_features(f"{t:032x}") for t in (10, 11, 12)]
    assert all(tf is not None and not tf.complete and tf.n_spans == 4 for tf in evicted)
    complete_all(p)
    assert p.stats()["spans_stored"] == 24 and store.counts()["traces"] == 6


def test_span_bound_evicts_too(make_pipeline, store):
    p = make_pipeline(max_buffered_spans=6)
    p.accept(request(chain(20) + chain(21)))
    p.tick(time.monotonic())
    assert p.stats()["traces_evicted"] == 1 and p.stats()["buffered_spans"] == 4


def test_late_spans_reopen_the_completed_trace(pipeline, store):
    spans = chain(30)
    now = time.monotonic()
    pipeline.accept(request(spans[:3]))
    pipeline.tick(now + 3)
    assert store.trace_features(f"{30:032x}").n_spans == 3
    pipeline.accept(request(spans[3:]))
    complete_all(pipeline)
    st = pipeline.stats()
    assert st["traces_reopened"] == 1
    tf = store.trace_features(f"{30:032x}")
    assert tf.n_spans == 4 and tf.nodes["api:GET /x"].own_ms == 20.0
    assert store.counts()["traces"] == 1


def test_flush_stores_everything(pipeline, store):
    pipeline.accept(request(chain(40) + chain(41)[1:]))
    assert pipeline.flush() == 2
    assert store.trace_features(f"{40:032x}").complete and not store.trace_features(f"{41:032x}").complete


@pytest.mark.parametrize("name,expected", [
    ("GET /users/123/orders/9f86d081884c7d65", "GET /users/{id}/orders/{id}"),
    ("/api/v1/items/550e8400-e29b-41d4-a716-446655440000", "/api/v1/items/{id}"),
    ("SELECT ts.trip2", "SELECT ts.trip2"),
    ("GET /api/v12/users/7", "GET /api/v12/users/{id}"),  # a version segment keeps all its digits
    ("http2 call", "http2 call"),
    ("HTTP GET", "HTTP GET"),
    ("cache  miss   42", "cache miss {id}"),
    ("", "unnamed"),
])
def test_operation_normalisation(name, expected):
    assert normalise_operation(name) == expected


def test_operation_prefers_route_and_rpc():
    assert operation_of("GET /u/5", "/u/{id}", "get", None, None) == "GET /u/{id}"
    assert operation_of("x", None, None, "shop.Cart", "Add") == "shop.Cart/Add"
    assert operation_of("x" * 1000, None, None, None, None, max_len=50) == "x" * 50


def test_producer_consumer_pair_is_a_call(pipeline, store):
    spans = [
        {"service": "web", "trace": 50, "span": 1, "name": "POST /order", "kind": SERVER, "start_ms": 0, "end_ms": 20},
        {"service": "web", "trace": 50, "span": 2, "parent": 1, "name": "orders publish", "kind": 4,
         "start_ms": 5, "end_ms": 8, "attrs": {"messaging.system": "kafka"}},
        {"service": "worker", "trace": 50, "span": 3, "parent": 2, "name": "orders process", "kind": 5,
         "start_ms": 9, "end_ms": 15},
        {"service": "web", "trace": 50, "span": 4, "parent": 1, "name": "audit publish", "kind": 4,
         "start_ms": 10, "end_ms": 12, "attrs": {"messaging.system": "kafka"}},
    ]
    pipeline.accept(request(spans))
    complete_all(pipeline)
    cg = store.graph("web:POST /order")
    assert cg.nodes["net:worker:orders process"].kind == "call_gap"
    assert cg.nodes["kafka:audit publish"].kind == "messaging"
    assert ("net:worker:orders process", "worker:orders process") in cg.call_edges


def test_span_type_cardinality_is_bounded(make_pipeline, store):
    p = make_pipeline(max_span_types=5)
    spans = [{"service": "s", "trace": 90, "span": 1, "name": "root", "kind": SERVER, "start_ms": 0, "end_ms": 50}]
    spans += [{"service": "s", "trace": 90, "span": 2 + k, "parent": 1, "name": f"user-{chr(97 + k)}x",
               "start_ms": k, "end_ms": k + 1} for k in range(10)]
    p.accept(request(spans))
    complete_all(p)
    st = p.stats()
    assert st["span_types"] == 6 and st["span_types_overflow"] == 6
    tf = store.trace_features(f"{90:032x}")
    assert tf.nodes["s:{other}"].count == 6 and tf.n_spans == 11


def test_late_spans_of_an_evicted_trace_reopen_it(make_pipeline, store):
    p = make_pipeline(max_buffered_traces=1)
    spans = chain(95)
    p.accept(request(spans[:2]))
    p.accept(request(chain(96)))  # evicts trace 95 (stored incomplete)
    p.tick(time.monotonic())
    assert store.trace_features(f"{95:032x}").n_spans == 2
    p.accept(request(spans[2:]))  # the rest of 95 arrives: re-opened whole, not stored as a fragment
    complete_all(p)
    tf = store.trace_features(f"{95:032x}")
    assert tf.n_spans == 4 and tf.nodes["api:GET /x"].own_ms == 20.0
    assert p.stats()["traces_reopened"] == 1


def test_fragment_after_the_late_window_is_counted(make_pipeline, store):
    p = make_pipeline(late_window_s=0.0)
    spans = chain(97)
    now = time.monotonic()
    p.accept(request(spans[:3]))
    p.tick(now + 3)
    p.accept(request(spans[3:]))  # too late to re-open: a smaller fragment never replaces the stored trace
    complete_all(p)
    st = p.stats()
    assert st["traces_replaced"] == 0 and st["traces_reopened"] == 0
    assert st["traces_kept_stored"] == 1 and st["spans_kept_stored"] == 1  # counted, not silent
    assert store.trace_features(f"{97:032x}").n_spans == 3
