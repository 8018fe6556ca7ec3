"""plugin.demo.shop_traffic: the test shop's spans through the real SDK exporters, real receivers, the collector
pipeline and its store: the trace ids and latencies it reports, its services, the slow service and the new
dependency it injects."""

from __future__ import annotations

import time

import pytest

from collector_processor import OtlpGrpcReceiver, OtlpHttpReceiver, Pipeline, PipelineConfig, open_store
from plugin.demo.shop_traffic import ENTRY, HOME, SPANS_PER_TRACE, ShopTraffic


@pytest.fixture
def collector(tmp_path):
    store = open_store(tmp_path / "data")
    pipeline = Pipeline(store, PipelineConfig(background=False))
    grpc_rx = OtlpGrpcReceiver(pipeline, "127.0.0.1:0").start()
    http_rx = OtlpHttpReceiver(pipeline, "127.0.0.1:0").start()
    yield store, pipeline, f"127.0.0.1:{grpc_rx.port}", f"http://127.0.0.1:{http_rx.port}"
    grpc_rx.stop(0)
    http_rx.stop(0)
    pipeline.close(flush=False)
    store.close()


def stored(pipeline: Pipeline, store, ids: list[str]) -> dict:
    pipeline.tick(time.monotonic() + pipeline.config.max_trace_wait_s + 1)
    return {t: store.trace_features(t) for t in ids}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sent_traces_arrive_with_the_reported_ids_and_latencies(collector, protocol: str) -> None:
    store, pipeline, grpc_target, http_base = collector
    shop = ShopTraffic(grpc_target if protocol == "grpc" else http_base, protocol=protocol, seed=3)
    try:
        sent = shop.send(5)
    finally:
        shop.close()
    assert shop.spans_sent == 5 * SPANS_PER_TRACE and len({s.trace_id for s in sent}) == 5
    got = stored(pipeline, store, [s.trace_id for s in sent])
    for s in sent:
        tf = got[s.trace_id]
        assert tf is not None and tf.entry == ENTRY and tf.complete and tf.n_spans == SPANS_PER_TRACE
        assert tf.duration_ms == pytest.approx(s.latency_ms, abs=1e-3)
        assert tf.start_unix_nano == s.start_unix_nano
        assert {n.split(":")[0].split("->")[0] for n in tf.nodes} >= {"frontend", "cart", "payments", "postgresql"}
    starts = [s.start_unix_nano for s in sent]
    assert starts == sorted(starts) and starts[-1] <= time.time_ns()  # spaced, in the past


def test_a_slow_service_and_a_new_dependency(collector) -> None:
    store, pipeline, grpc_target, _ = collector
    shop = ShopTraffic(grpc_target, seed=4)
    try:
        normal = shop.send(20)
        slow = shop.send(5, slow="payments", slow_ms=300.0)
        fraud = shop.send(2, fraud=True)
        home = shop.send_home(2)
    finally:
        shop.close()
    got = stored(pipeline, store, [s.trace_id for s in normal + slow + fraud + home])

    def own(trace_id: str, service: str) -> float:
        tf = got[trace_id]
        return sum(f.own_ms for n, f in tf.nodes.items() if n.startswith(service + ":"))

    assert min(own(s.trace_id, "payments") for s in slow) > 300.0 > max(own(s.trace_id, "payments") for s in normal)
    assert min(s.latency_ms for s in slow) > 300.0 + min(s.latency_ms for s in normal) - 20.0
    assert all(any(n.startswith("fraud:") for n in got[s.trace_id].nodes) for s in fraud)
    assert not any(n.startswith("fraud:") for s in normal for n in got[s.trace_id].nodes)
    assert shop.spans_sent == 27 * SPANS_PER_TRACE + 2 * 2 + 2
    assert all(got[s.trace_id].entry == HOME and got[s.trace_id].n_spans == 1 for s in home)
