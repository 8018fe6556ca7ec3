"""`whyslow serve` security wiring: the OTLP receivers require the ingest token (else the auth token), and
--tls-cert-file/--tls-key-file put every listener (OTLP gRPC/HTTP, REST, gRPC query API) on TLS."""

from __future__ import annotations

import http.client
import json
import ssl

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from plugin.config import ServeConfig
from plugin.server import WhySlowServer
from tests.support.otlp_build import SERVER, request
from tests.tls_cert import self_signed

AUTH, INGEST = "query-token-1", "ingest-token-2"


def _config(tmp_path, **kw) -> ServeConfig:
    return ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                       http="127.0.0.1:0", grpc="127.0.0.1:0", **kw).validate()


def _body(trace: int) -> bytes:
    return request([{"service": "sec", "trace": trace, "span": 1, "name": "GET /s", "kind": SERVER,
                     "start_ms": 0, "end_ms": 5}]).SerializeToString()


def _https(port: int, ctx: ssl.SSLContext, method: str, path: str, body: bytes | None = None,
           headers: dict | None = None) -> tuple[int, bytes]:
    con = http.client.HTTPSConnection("localhost", port, timeout=10, context=ctx)
    try:
        con.request(method, path, body=body, headers=headers or {})
        r = con.getresponse()
        return r.status, r.read()
    finally:
        con.close()


def test_ingest_token_and_tls_on_every_listener(tmp_path):
    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=cert)
    with open(cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    cfg = _config(tmp_path, auth_token=AUTH, ingest_token=INGEST, tls_cert_file=cert, tls_key_file=key)
    with WhySlowServer(cfg) as server:
        p = server.ports
        proto = {"Content-Type": "application/x-protobuf"}
        assert _https(p["otlp_http"], ctx, "POST", "/v1/traces", _body(1), proto)[0] == 401
        assert _https(p["otlp_http"], ctx, "POST", "/v1/traces", _body(1),
                      {**proto, "Authorization": f"Bearer {AUTH}"})[0] == 401  # the query token is not the ingest one
        assert _https(p["otlp_http"], ctx, "POST", "/v1/traces", _body(2),
                      {**proto, "Authorization": f"Bearer {INGEST}"})[0] == 200
        with grpc.secure_channel(f"localhost:{p['otlp_grpc']}", creds) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(_body(3), timeout=10)
            assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")(
                _body(4), metadata=(("authorization", f"Bearer {INGEST}"),), timeout=10)
        # REST over HTTPS, with the query token
        assert _https(p["http"], ctx, "GET", "/healthz")[0] == 200
        assert _https(p["http"], ctx, "GET", "/api/v1/status")[0] == 401
        status, body = _https(p["http"], ctx, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {AUTH}"})
        assert status == 200 and "models" in json.loads(body)
        assert server.url("http").startswith("https://")
        # gRPC query API over TLS
        with grpc.secure_channel(f"localhost:{p['grpc']}", creds) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        st = server.pipeline.stats()
        assert st["requests_unauthenticated"] == 3 and st["spans_accepted"] == 2


def test_auth_token_guards_ingest_when_no_ingest_token(tmp_path):
    with WhySlowServer(_config(tmp_path, auth_token=AUTH)) as server:
        con = http.client.HTTPConnection("127.0.0.1", server.ports["otlp_http"], timeout=10)
        con.request("POST", "/v1/traces", body=_body(5), headers={"Content-Type": "application/x-protobuf"})
        assert con.getresponse().status == 401
        con.close()
        con = http.client.HTTPConnection("127.0.0.1", server.ports["otlp_http"], timeout=10)
        con.request("POST", "/v1/traces", body=_body(5), headers={"Content-Type": "application/x-protobuf",
                                                                   "Authorization": f"Bearer {AUTH}"})
        assert con.getresponse().status == 200
        con.close()


def test_tls_settings_are_validated(tmp_path):
    from plugin.config import ConfigError

    cert, _ = self_signed(tmp_path)
    with pytest.raises(ConfigError, match="both tls_cert_file and tls_key_file"):
        _config(tmp_path, tls_cert_file=cert)
    with pytest.raises(ConfigError, match="cannot load the TLS"):
        _config(tmp_path, tls_cert_file=cert, tls_key_file=cert)
