"""Overload: senders that behave like the OpenTelemetry Collector's otlp exporters lose nothing.

The sender retries only what the OTLP spec calls retryable (gRPC: UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED,
ABORTED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED only with RetryInfo; HTTP: 429, 502, 503, 504),
honours RetryInfo / Retry-After, and drops a batch on any other answer or a connection reset — as the
Collector does. More concurrent senders than the receiver has handler threads, a small queue and memory
limit: every refusal must be a retryable one we counted, and every span must end up stored exactly once.
"""

from __future__ import annotations

import http.client
import threading
import time

import grpc
from google.rpc.error_details_pb2 import RetryInfo

from collector_processor import OtlpGrpcReceiver, OtlpHttpReceiver, Pipeline, PipelineConfig
from tests.support.otlp_build import request

from .test_assembly import chain

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
                  grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.DATA_LOSS}
RETRYABLE_HTTP = {429, 502, 503, 504}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked = self.lost = self.refused_spans = self.refusals = 0
        self.errors: list[str] = []

    def add(self, **kw) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


def _grpc_sender(port: int, batches: list[bytes], spans_per_batch: int, tally: Tally) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        export = ch.unary_unary(EXPORT)
        for body in batches:
            backoff = 0.05
            while True:
                try:
                    export(body, timeout=30)
                    tally.add(acked=spans_per_batch)
                    break
                except grpc.RpcError as err:
                    code = err.code()
                    md = dict(err.trailing_metadata() or ())
                    info = md.get("google.rpc.retryinfo-bin")
                    if code in RETRYABLE_GRPC or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and info):
                        tally.add(refusals=1, refused_spans=spans_per_batch)
                        delay = RetryInfo.FromString(info).retry_delay.ToNanoseconds() / 1e9 if info else backoff
                        backoff = min(backoff * 2, 1.0)
                        time.sleep(delay)
                        continue
                    tally.add(lost=spans_per_batch)
                    tally.errors.append(f"{code}: {err.details()}")
                    break


def _http_sender(port: int, batches: list[bytes], spans_per_batch: int, tally: Tally) -> None:
    for body in batches:
        while True:
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                con.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                r = con.getresponse()
                r.read()
            except OSError as exc:  # a reset: the exporter cannot know whether the server got the batch
                tally.add(lost=spans_per_batch)
                tally.errors.append(f"http connection error: {exc!r}")
                break
            finally:
                con.close()
            if r.status == 200:
                tally.add(acked=spans_per_batch)
                break
            if r.status in RETRYABLE_HTTP:
                tally.add(refusals=1, refused_spans=spans_per_batch)
                time.sleep(float(r.getheader("Retry-After") or 1))
                continue
            tally.add(lost=spans_per_batch)
            tally.errors.append(f"http {r.status}")
            break


def test_collector_like_senders_lose_nothing_under_overload(tmp_path):
    from collector_processor import open_store

    store = open_store(tmp_path / "data")
    # two handler threads: the old grpcio hard limit (x4 = 8 concurrent RPCs) is far below the 24 senders
    cfg = PipelineConfig(max_queue_spans=1_500, retry_after_s=0.05, grpc_workers=2, trace_timeout_s=0.2,
                         max_trace_wait_s=2.0, tick_interval_s=0.05, max_inflight_bytes=2 << 20)
    p = Pipeline(store, cfg)
    g = OtlpGrpcReceiver(p, "127.0.0.1:0").start()
    h = OtlpHttpReceiver(p, "127.0.0.1:0").start()
    tally = Tally()
    per_batch, traces_per_batch = 400, 100
    n_grpc, n_http, batches_each = 24, 4, 6
    threads, trace = [], 1
    for k in range(n_grpc + n_http):
        batches = []
        for _ in range(batches_each):
            batches.append(request([s for t in range(trace, trace + traces_per_batch) for s in chain(t)])
                           .SerializeToString())
            trace += traces_per_batch
        target = _grpc_sender if k < n_grpc else _http_sender
        threads.append(threading.Thread(target=target, args=(g.port if k < n_grpc else h.port, batches,
                                                             per_batch, tally)))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert not any(t.is_alive() for t in threads)
    finally:
        g.stop(0)
        h.stop(0)
        p.close()  # flushes every buffered trace
    total = (n_grpc + n_http) * batches_each * per_batch
    st = p.stats()
    try:
        assert tally.errors == [] and tally.lost == 0
        assert tally.acked == total == st["spans_accepted"]
        assert tally.refusals > 0, "the test did not overload the receiver"
        assert st["requests_refused"] == tally.refusals and st["spans_refused"] == tally.refused_spans
        assert st["spans_dropped"] == 0 and st["spans_duplicate"] == 0
        counts = store.counts()
        assert counts["traces"] == trace - 1 and counts["spool"] == 0
        assert st["spans_stored"] == total
        for t in (1, trace // 2, trace - 1):
            tf = store.trace_features(f"{t:032x}")
            assert tf is not None and tf.n_spans == 4 and tf.complete
    finally:
        store.close()


def _post_all_then_read(port: int, body: bytes) -> tuple[int, dict, bytes]:
    """As Python senders do: write the whole body, then read the answer (a reset raises)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        con.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        r = con.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        con.close()


def test_refusals_are_readable_after_the_body(make_pipeline):
    import socket

    p = make_pipeline(grpc_workers=1, max_recv_bytes=256 * 1024, max_inflight_bytes=1 << 20)
    h = OtlpHttpReceiver(p, "127.0.0.1:0").start()
    big = request([s for t in range(1, 2001) for s in chain(t)]).SerializeToString()  # ~0.5 MB, 8000 spans
    assert 256 * 1024 < len(big) < 2 * 256 * 1024
    fits = request([s for t in range(1, 401) for s in chain(t)]).SerializeToString()  # 1600 spans
    stalled = []
    try:
        for _ in range(5):  # too large: 413, read after the body, never a reset
            status, _, data = _post_all_then_read(h.port, big)
            assert status == 413 and b"exceeds" in data
        for _ in range(4):  # four clients announce a body and never send it: they hold every slot
            s = socket.create_connection(("127.0.0.1", h.port), timeout=10)
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      b"Content-Length: 100\r\n\r\n")
            stalled.append(s)
        deadline = time.monotonic() + 60  # until their handler threads hold the slots (slow on a loaded machine)
        while h._handler.slots._value > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert h._handler.slots._value == 0, "the stalled clients' handler threads never took their slots"
        for _ in range(3):
            status, headers, _ = _post_all_then_read(h.port, fits)
            assert status == 503 and headers["Retry-After"] == "1"
    finally:
        for s in stalled:
            s.close()
        time.sleep(0.3)
    try:
        st = p.stats()
        assert st["requests_too_large"] == 5
        assert st["requests_refused"] == 3 and st["spans_refused"] == 3 * 1600  # drained bodies are counted
        assert _post_all_then_read(h.port, fits)[0] == 200
    finally:
        h.stop(0)


def test_memory_limiter_counts_queued_spans_and_refuses(make_pipeline):
    import pytest

    from collector_processor import PipelineFull

    p = make_pipeline(max_inflight_bytes=400 * 1024, max_queue_spans=10**6)
    first = request([s for t in range(1, 201) for s in chain(t)])  # 800 spans queued: ~290 kB estimated
    p.accept(first)
    held = p.stats()["queued_bytes"]
    assert 800 * 200 < held < 800 * 1000
    with pytest.raises(PipelineFull) as ei:
        p.accept(request([s for t in range(1001, 1201) for s in chain(t)]))
    assert "memory limit reached" in str(ei.value)
    st = p.stats()
    assert st["requests_refused"] == 1 and st["spans_refused"] == 800 and st["spans_accepted"] == 800
    p.tick()  # the worker drains the queue: the bytes are given back and the same request is accepted
    assert p.stats()["queued_bytes"] == 0
    p.accept(request([s for t in range(1001, 1201) for s in chain(t)]))
    assert p.stats()["spans_accepted"] == 1600
