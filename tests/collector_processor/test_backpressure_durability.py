"""Backpressure (retryable answers, the SDK exporter retries until accepted) and restart durability
(acknowledged spans survive a crash: they are replayed from the spool)."""

from __future__ import annotations

import http.client
import threading
import time

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from collector_processor import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    Pipeline,
    PipelineConfig,
    PipelineFull,
    open_store,
)
from tests.support.otlp_build import SERVER, request
from tests.support.pipeline import complete_all

from .test_assembly import chain


@pytest.fixture
def full(make_pipeline):
    """A pipeline whose queue is full (no worker runs until the test ticks it), with both receivers."""
    p = make_pipeline(max_queue_spans=4, retry_after_s=0.2)
    p.accept(request(chain(1)))
    g = OtlpGrpcReceiver(p, "127.0.0.1:0").start()
    h = OtlpHttpReceiver(p, "127.0.0.1:0").start()
    yield p, g, h
    g.stop(0)
    h.stop(0)


def test_full_pipeline_answers_retryable(full):
    p, g, h = full
    with pytest.raises(PipelineFull):
        p.accept(request(chain(2)))
    body = request(chain(3)).SerializeToString()
    con = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
    con.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
    r = con.getresponse()
    r.read()
    con.close()
    assert r.status == 503 and r.getheader("Retry-After") == "1"
    with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
        with pytest.raises(grpc.RpcError) as ei:
            TraceServiceStub(ch).Export(request(chain(4)), timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    md = dict(ei.value.trailing_metadata())
    assert RetryInfo.FromString(md["google.rpc.retryinfo-bin"]).retry_delay.ToNanoseconds() == 200_000_000
    st = p.stats()
    assert st["requests_refused"] == 3 and st["spans_refused"] == 12 and st["spans_accepted"] == 4
    assert st["spans_dropped"] == 0


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporter_retries_until_accepted(full, store, transport):
    p, g, h = full
    if transport == "grpc":
        exp = GrpcExporter(endpoint=f"127.0.0.1:{g.port}", insecure=True, timeout=15)
    else:
        exp = HttpExporter(endpoint=f"http://127.0.0.1:{h.port}/v1/traces", timeout=15)
    tp = TracerProvider(resource=Resource.create({"service.name": "retrier"}))
    tp.add_span_processor(SimpleSpanProcessor(exp))
    drained = threading.Timer(0.5, lambda: p.tick(time.monotonic()))
    drained.start()
    try:
        span = tp.get_tracer("t").start_span("GET /again", kind=SpanKind.SERVER)
        span.end()  # exports synchronously: refused, backs off, retried after the queue drained
    finally:
        drained.join()
        tp.shutdown()
    st = p.stats()
    assert st["requests_refused"] >= 1 and st["spans_accepted"] == 5
    complete_all(p)
    assert "retrier:GET /again" in store.entry_points()


def test_acknowledged_spans_survive_a_crash(tmp_path):
    data = tmp_path / "d"
    st = open_store(data)
    p = Pipeline(st, PipelineConfig(background=False))
    g = OtlpGrpcReceiver(p, "127.0.0.1:0").start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
            TraceServiceStub(ch).Export(request(chain(7) + chain(8)), timeout=10)  # acknowledged
    finally:
        g.stop(0)
    assert p.stats()["spans_accepted"] == 8
    st.close()  # crash: nothing was assembled or stored, the process dies here

    st2 = open_store(data)
    try:
        assert st2.counts()["spool"] == 1 and st2.counts()["traces"] == 0
        p2 = Pipeline(st2, PipelineConfig(background=False))
        assert p2.stats()["spans_replayed"] == 8
        complete_all(p2)
        assert st2.trace_features(f"{7:032x}").n_spans == 4 and st2.trace_features(f"{8:032x}").n_spans == 4
        # kept through the late window (a crash now would rebuild the traces whole), then released
        assert st2.counts()["spool"] == 1
        cfg = p2.config
        p2.tick(time.monotonic() + cfg.max_trace_wait_s + cfg.late_window_s + 2)
        assert st2.counts()["spool"] == 0
        p2.close()
    finally:
        st2.close()

    st3 = open_store(data)  # and a clean restart finds the stored traces, with nothing left to replay
    try:
        assert Pipeline(st3, PipelineConfig(background=False)).stats()["spans_replayed"] == 0
        assert st3.trace_features(f"{7:032x}").entry == "svc:GET /r"
    finally:
        st3.close()


def test_spool_row_released_only_when_all_its_traces_are_stored(pipeline, store):
    now = time.monotonic()
    spans = chain(60) + chain(61)[1:]  # trace 61 has no root: it waits up to max_trace_wait_s
    pipeline.accept(request(spans))
    pipeline.tick(now + 3)
    assert store.trace_features(f"{60:032x}") is not None
    assert store.counts()["spool"] == 1  # trace 61 still buffered: its request stays spooled
    pipeline.tick(now + pipeline.config.max_trace_wait_s + 1)
    assert store.counts()["spool"] == 1  # both stored, still in the late window: a crash would rebuild them
    pipeline.tick(now + pipeline.config.max_trace_wait_s + pipeline.config.late_window_s + 2)
    assert store.counts()["spool"] == 0


def test_replay_skips_undecodable_spool_rows(tmp_path):
    st = open_store(tmp_path)
    st.spool_append(b"\xff\xff not protobuf")
    st.spool_append(request([{"service": "s", "trace": 9, "span": 1, "name": "r", "kind": SERVER,
                              "start_ms": 0, "end_ms": 1}]).SerializeToString())
    p = Pipeline(st, PipelineConfig(background=False))
    assert p.stats()["spans_replayed"] == 1
    p.flush()
    assert st.counts()["spool"] == 0 and st.trace_features(f"{9:032x}") is not None
    st.close()


def test_spool_segments_rotate_and_are_removed(tmp_path, monkeypatch):
    import collector_processor.sqlite_store as ss

    monkeypatch.setattr(ss, "SEGMENT_BYTES", 200)  # a new segment file every request or two
    st = open_store(tmp_path)
    p = Pipeline(st, PipelineConfig(background=False))
    now = time.monotonic()
    for t in range(200, 210):
        p.accept(request(chain(t)))
    segs = sorted((tmp_path / "spool").glob("seg-*.bin"))
    assert len(segs) >= 5 and st.counts()["spool"] == 10
    p.tick(now + 5)
    assert st.counts()["spool"] == 10 and st.counts()["traces"] == 10  # stored; final after the late window
    p.tick(now + 5 + p.config.late_window_s + 1)
    assert st.counts()["spool"] == 0
    assert len(list((tmp_path / "spool").glob("seg-*.bin"))) <= 1  # only the open one can remain
    st.close()
    assert list((tmp_path / "spool").glob("seg-*.bin")) == []
