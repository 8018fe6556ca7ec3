"""The real OpenTelemetry SDK exports a small multi-service app over real OTLP gRPC and HTTP: the call graph,
its inversion, the sum/max structure, the per-trace features and the stored rows are exact."""

from __future__ import annotations

import time

import networkx as nx
import pytest

from tests.support.pipeline import complete_all
from tests.support.sdk_app import CALL_EDGES, ENTRY, EXPECTED, KINDS, STRUCTURE, ShopApp

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def shop(receivers):
    g, h = receivers
    app = ShopApp(g.port, h.port)
    yield app
    app.shutdown()


def test_call_graph_features_and_store(shop, pipeline, store):
    completed = []
    pipeline.add_listener(completed.append)
    t1 = shop.request(T0)
    t2 = shop.request(T0 + 1_000_000_000, render=False, auth_error=True)
    shop.flush()
    n_spans = 15 + 14
    stats = pipeline.stats()
    assert stats["spans_received"] == n_spans and stats["spans_accepted"] == n_spans
    assert stats["spans_rejected"] == 0 and stats["spans_dropped"] == 0
    assert complete_all(pipeline) == 2
    stats = pipeline.stats()
    assert stats["traces_completed"] == 2 and stats["traces_incomplete"] == 0
    assert stats["spans_stored"] == n_spans

    assert store.entry_points() == [ENTRY]
    cg = store.graph(ENTRY)
    assert set(cg.nodes) == set(EXPECTED)
    assert set(cg.call_edges) == CALL_EDGES
    assert cg.mechanisms() == STRUCTURE
    for node, kind in KINDS.items():
        assert cg.nodes[node].kind == kind
    assert cg.nodes["net:stock:GET /stock/{sku}"].service == "stock"  # the call gap is the callee's
    assert cg.nodes["redis:HGETALL cart"].service == "redis"
    calls = nx.DiGraph(cg.call_edges)
    assert nx.is_directed_acyclic_graph(calls)
    assert list(nx.topological_sort(calls))[0] == ENTRY  # every node is called from the entry point
    assert cg.nodes["cart:GET /cart"].structure == "max"

    df = store.features(ENTRY)
    assert list(df.index) == [t1, t2]
    assert set(df.columns) == set(EXPECTED) | {"__start_unix_nano", "__duration_ms"}
    for node, (lat, _, _, _) in EXPECTED.items():
        assert df.loc[t1, node] == pytest.approx(lat, abs=1e-9)
    assert df.loc[t2, "frontend:render page"] == 0.0  # branch not taken -> 0
    assert df.loc[t1, "__start_unix_nano"] == T0 and df.loc[t1, "__duration_ms"] == 100.0

    tf = store.trace_features(t1)
    assert tf.entry == ENTRY and tf.complete and tf.n_spans == 15
    for node, (lat, own, gap, count) in EXPECTED.items():
        f = tf.nodes[node]
        assert (f.latency_ms, f.own_ms, f.gap_ms, f.count) == pytest.approx((lat, own, gap, count)), node
        assert not f.error
    assert tf.nodes["net:cart:GET /cart"].start_offset_ms == pytest.approx(14.0)
    tf2 = store.trace_features(t2)
    assert tf2.nodes["auth:POST /login"].error and "frontend:render page" not in tf2.nodes
    # identity: caller latency = own + sum of its children (sequential structure)
    kids = [b for a, b in CALL_EDGES if a == ENTRY]
    assert tf.nodes[ENTRY].own_ms + sum(tf.nodes[k].latency_ms for k in kids) == pytest.approx(100.0)

    assert [c.trace_id for c in completed] == [t1, t2]
    assert completed[0].entry == ENTRY and completed[0].complete and completed[0].duration_ms == 100.0
    assert completed[0].row["net:price:price.Prices/Quote"] == pytest.approx(30.0)
    counts = store.counts()
    assert counts["traces"] == 2 and counts["trace_nodes"] == 2
    pipeline.tick(time.monotonic() + pipeline.config.max_trace_wait_s + pipeline.config.late_window_s + 2)
    assert store.counts()["spool"] == 0  # released once the traces are final (after the late window)


def test_background_worker_completes_traces(receivers, make_pipeline, store):
    """With the background thread, traces complete by themselves after the idle timeout."""
    p = make_pipeline(background=True, trace_timeout_s=0.2, tick_interval_s=0.05)
    # the receivers fixture is bound to the default pipeline: start receivers for this one
    from collector_processor import OtlpGrpcReceiver, OtlpHttpReceiver

    g = OtlpGrpcReceiver(p, "127.0.0.1:0").start()
    h = OtlpHttpReceiver(p, "127.0.0.1:0").start()
    app = ShopApp(g.port, h.port, batch=False)
    try:
        done = []
        p.add_listener(done.append)
        tid = app.request(T0)
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c.trace_id for c in done] == [tid]
        assert store.trace_features(tid).nodes[ENTRY].latency_ms == 100.0
    finally:
        app.shutdown()
        g.stop(0)
        h.stop(0)
