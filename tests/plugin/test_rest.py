"""plugin.rest: the route table (Flask rules, the OpenAPI document generated from it) and, on a real in-process
server, bearer auth on every protected route, JSON errors, request metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plugin.config import ServeConfig
from plugin.rest import MAX_BODY, ROUTES, flask_rule, openapi_document
from plugin.server import WhySlowServer

TOKEN = "rest-test-token"


def call(url: str, method: str = "GET", body: bytes | None = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("rest")
    config = ServeConfig(data_dir=str(data), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0", http="127.0.0.1:0",
                         grpc="127.0.0.1:0", auth_token=TOKEN).validate()
    with WhySlowServer(config) as srv:
        yield srv


def test_flask_rules_follow_the_openapi_paths() -> None:
    assert flask_rule("/api/v1/traces/{trace_id}/rca") == "/api/v1/traces/<trace_id>/rca"
    assert flask_rule("/ui/{path}") == "/ui/<path:path>"
    assert flask_rule("/healthz") == "/healthz"


def test_the_openapi_document_lists_every_route_with_its_auth() -> None:
    doc = openapi_document()
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert set(map(str, route.responses)) == set(op["responses"])
        public = op.get("security") == []
        assert public == (not route.auth), (route.method, route.path)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == len(ROUTES)  # unique even where two routes share a handler


def test_every_protected_route_needs_the_bearer_token(server) -> None:
    base = server.url("http")
    for route in ROUTES:
        path = route.path.replace("{trace_id}", "0" * 32).replace("{path}", "index.html")
        body = b"{}" if route.method == "POST" else None
        status, headers, payload = call(base + path, route.method, body)
        if route.auth:
            assert status == 401, (route.method, path)
            assert json.loads(payload) == {"error": "missing or invalid bearer token"}
            assert {k.lower(): v for k, v in headers.items()}["www-authenticate"] == 'Bearer realm="whyslow"'
            for wrong in ("Bearer nope", f"Basic {TOKEN}", TOKEN):
                assert call(base + path, route.method, body, headers={"Authorization": wrong})[0] == 401
            assert call(base + path, route.method, body, token=TOKEN)[0] != 401
        else:
            assert status != 401, (route.method, path)


def test_errors_are_json_and_counted(server) -> None:
    base = server.url("http")
    status, _, body = call(base + "/nowhere", token=TOKEN)
    assert (status, json.loads(body)) == (404, {"error": "not found"})
    status, headers, body = call(base + "/api/v1/status", "DELETE", token=TOKEN)
    assert status == 405 and json.loads(body) == {"error": "method not allowed"} and "GET" in headers["Allow"]
    status, _, body = call(base + "/query", "POST", b"[1, 2]", token=TOKEN)
    assert (status, json.loads(body)) == (400, {"error": "request body must be a JSON object"})
    status, _, body = call(base + "/query", "POST", b"{not json", token=TOKEN)
    assert (status, json.loads(body)) == (400, {"error": "request body must be JSON"})
    status, _, body = call(base + "/query", "POST", b" " * (MAX_BODY + 1), token=TOKEN)
    assert (status, json.loads(body)) == (413, {"error": "request body too large"})
    status, headers, _ = call(base + "/healthz")
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
    _, _, text = call(base + "/metrics", token=TOKEN)
    samples = {(s.name, s.labels.get("api"), s.labels.get("status")): s.value
               for f in text_string_to_metric_families(text.decode()) for s in f.samples}
    assert samples[("whyslow_api_requests_total", "rest", "404")] >= 1
    assert samples[("whyslow_api_requests_total", "grafana", "400")] >= 2
