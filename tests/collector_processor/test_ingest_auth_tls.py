"""Ingest auth (bearer token, as the Collector's bearertokenauth) and TLS on the OTLP receivers, through the
real OpenTelemetry SDK exporters and raw clients."""

from __future__ import annotations

import http.client
import ssl

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from collector_processor import OtlpGrpcReceiver, OtlpHttpReceiver, TlsFiles
from tests.support.otlp_build import SERVER, request
from tests.support.pipeline import complete_all
from tests.tls_cert import self_signed

TOKEN = "s3cret-ingest-token"


def _req(trace: int):
    return request([{"service": "auth", "trace": trace, "span": 1, "name": "GET /t", "kind": SERVER,
                     "start_ms": 0, "end_ms": 5}])


def _sdk_span(exporter, name: str) -> None:
    tp = TracerProvider(resource=Resource.create({"service.name": "sdk"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    tp.get_tracer("t").start_span(name, kind=SpanKind.SERVER).end()
    tp.shutdown()


def test_ingest_without_the_token_is_refused_on_both_protocols(pipeline, store):
    g = OtlpGrpcReceiver(pipeline, "127.0.0.1:0", token=TOKEN).start()
    h = OtlpHttpReceiver(pipeline, "127.0.0.1:0", token=TOKEN).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:
            for md in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
                with pytest.raises(grpc.RpcError) as ei:
                    TraceServiceStub(ch).Export(_req(1), metadata=md, timeout=10)
                assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
            TraceServiceStub(ch).Export(_req(2), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10)
        body = _req(3).SerializeToString()
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            con = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
            con.request("POST", "/v1/traces", body=body,
                        headers={"Content-Type": "application/x-protobuf", **headers})
            r = con.getresponse()
            r.read()
            con.close()
            assert r.status == 401 and r.getheader("WWW-Authenticate").startswith("Bearer")
        con = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
        con.request("POST", "/v1/traces", body=body,
                    headers={"Content-Type": "application/x-protobuf", "Authorization": f"bearer {TOKEN}"})
        assert con.getresponse().status == 200
        con.close()
        # the real SDK exporters with the header configured, as an operator would
        _sdk_span(GrpcExporter(endpoint=f"127.0.0.1:{g.port}", insecure=True,
                               headers={"authorization": f"Bearer {TOKEN}"}, timeout=10), "GET /grpc")
        _sdk_span(HttpExporter(endpoint=f"http://127.0.0.1:{h.port}/v1/traces",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10), "GET /http")
        _sdk_span(HttpExporter(endpoint=f"http://127.0.0.1:{h.port}/v1/traces", timeout=10), "GET /anon")
    finally:
        g.stop(0)
        h.stop(0)
    st = pipeline.stats()
    assert st["requests_unauthenticated"] == 3 + 3 + 1 and st["spans_accepted"] == 4
    complete_all(pipeline)
    entries = set(store.entry_points())
    assert {"auth:GET /t", "sdk:GET /grpc", "sdk:GET /http"} <= entries and "sdk:GET /anon" not in entries
    assert store.counts()["traces"] == 4


def test_tls_roundtrip_on_both_receivers(pipeline, store, tmp_path):
    cert, key = self_signed(tmp_path)
    tls = TlsFiles(cert, key)
    g = OtlpGrpcReceiver(pipeline, "127.0.0.1:0", token=TOKEN, tls=tls).start()
    h = OtlpHttpReceiver(pipeline, "127.0.0.1:0", token=TOKEN, tls=tls).start()
    try:
        with open(cert, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel(f"localhost:{g.port}", creds) as ch:
            TraceServiceStub(ch).Export(_req(11), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10)
        with grpc.insecure_channel(f"127.0.0.1:{g.port}") as ch:  # plaintext to a TLS port: no answer, no span
            with pytest.raises(grpc.RpcError):
                TraceServiceStub(ch).Export(_req(12), timeout=3)
        ctx = ssl.create_default_context(cafile=cert)
        con = http.client.HTTPSConnection("localhost", h.port, timeout=10, context=ctx)
        con.request("POST", "/v1/traces", body=_req(13).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"})
        assert con.getresponse().status == 200
        con.close()
        _sdk_span(GrpcExporter(endpoint=f"localhost:{g.port}", insecure=False, credentials=creds,
                               headers={"authorization": f"Bearer {TOKEN}"}, timeout=10), "GET /tls")
        con = http.client.HTTPConnection("127.0.0.1", h.port, timeout=5)  # plaintext to the HTTPS port
        with pytest.raises((OSError, http.client.HTTPException)):
            con.request("POST", "/v1/traces", body=b"x", headers={"Content-Type": "application/x-protobuf"})
            con.getresponse()
        con.close()
    finally:
        g.stop(0)
        h.stop(0)
    assert pipeline.stats()["spans_accepted"] == 3
    complete_all(pipeline)
    assert all(store.trace_features(f"{t:032x}") is not None for t in (11, 13))
    assert store.trace_features(f"{12:032x}") is None
    assert "sdk:GET /tls" in store.entry_points()
