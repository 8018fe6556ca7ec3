"""/openapi.json is a valid OpenAPI 3.1 document, every documented operation is exercised against the live
server, and every answer (also to generated junk input) has a documented status and matches its schema."""

from __future__ import annotations

import string
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from plugin.demo.shop_traffic import ENTRY
from tests.support.openapi import check

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def doc(shop):
    status, body = shop.srv.get("/openapi.json", auth=False)
    assert status == 200
    return body


def test_document_is_valid(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_every_documented_operation_answers_as_documented(shop, doc):
    srv = shop.srv
    slow = shop.slow_ids[0]
    calls = {
        ("GET", "/api/v1/traces/{trace_id}/rca"): [
            ("GET", f"/api/v1/traces/{slow}/rca", None, 200),
            ("GET", f"/api/v1/traces/{slow}/rca?intervals=0", None, 200),
            ("GET", "/api/v1/traces/" + "0f" * 16 + "/rca", None, 404),
            ("GET", "/api/v1/traces/xyz/rca", None, 400),
            ("GET", f"/api/v1/traces/{shop.home[0].trace_id}/rca", None, 409),
        ],
        ("GET", "/api/v1/outliers"): [
            ("GET", "/api/v1/outliers?" + urlencode({"entry": ENTRY, "min_score": 1, "limit": 5}), None, 200),
            ("GET", "/api/v1/outliers?from=2020-01-01T00:00:00Z&to=1990000000000", None, 200),
            ("GET", "/api/v1/outliers?min_score=-1", None, 400),
        ],
        ("GET", "/api/v1/incident"): [
            ("GET", "/api/v1/incident?" + urlencode({"entry": ENTRY, "from": "now-1h", "to": "now"}), None, 200),
            ("GET", "/api/v1/incident?from=1990000000000&to=2020-01-01T00:00:00Z", None, 400),
            ("GET", "/api/v1/incident?limit=0", None, 400),
            ("GET", "/api/v1/incident?baseline_from=now-1h&baseline_to=now-2h", None, 400),
        ],
        ("GET", "/api/v1/incidents"): [
            ("GET", "/api/v1/incidents?" + urlencode({"entry": ENTRY}), None, 200),
            ("GET", "/api/v1/incidents?limit=0", None, 400),
        ],
        ("GET", "/api/v1/regressions"): [
            ("GET", "/api/v1/regressions?" + urlencode({"entry": ENTRY, "source": "query"}), None, 200),
            ("GET", "/api/v1/regressions?source=nope", None, 400),
        ],
        ("GET", "/api/v1/regression"): [
            ("GET", "/api/v1/regression?" + urlencode({
                "entry": ENTRY, "baseline_from": shop.normal[0].start_unix_nano // 10**6,
                "baseline_to": shop.normal[80].start_unix_nano // 10**6,
                "from": shop.normal[80].start_unix_nano // 10**6, "to": "now", "intervals": 0}), None, 200),
            ("GET", "/api/v1/regression?" + urlencode({"entry": ENTRY, "stat": "p101"}), None, 400),
            ("GET", "/api/v1/regression?entry=x", None, 404),
        ],
        ("POST", "/api/v1/whatif"): [
            ("POST", "/api/v1/whatif", {"entry": ENTRY, "from": shop.normal[0].start_unix_nano // 10**6,
                                        "interventions": {"cart": 0.5}, "intervals": 0}, 200),
            ("POST", "/api/v1/whatif", {"entry": ENTRY, "interventions": {}}, 400),
        ],
        ("GET", "/api/v1/graph"): [
            ("GET", "/api/v1/graph?entry=" + quote(ENTRY), None, 200),
            ("GET", "/api/v1/graph", None, 400),
            ("GET", "/api/v1/graph?entry=x", None, 404),
        ],
        ("GET", "/api/v1/status"): [("GET", "/api/v1/status", None, 200)],
        ("GET", "/healthz"): [("GET", "/healthz", None, 200)],
        ("GET", "/readyz"): [("GET", "/readyz", None, 200)],
        ("GET", "/metrics"): [("GET", "/metrics", None, 200)],
        ("GET", "/openapi.json"): [("GET", "/openapi.json", None, 200)],
        ("GET", "/"): [("GET", "/", None, 200)],
        ("POST", "/metrics"): [("POST", "/metrics", {}, 200)],
        ("POST", "/metric-payload-options"): [("POST", "/metric-payload-options", {"name": "entry"}, 200)],
        ("POST", "/options"): [("POST", "/options", {"metric": "outliers", "payload": {}, "name": "entry"}, 200)],
        ("POST", "/search"): [("POST", "/search", {"target": ""}, 200)],
        ("POST", "/query"): [("POST", "/query", {"targets": [{"target": "rca", "payload": {"traceId": slow}},
                                                             {"target": "outliers"}, {"target": "annotations"}]},
                              200)],
        ("POST", "/annotations"): [("POST", "/annotations", {"annotation": {"query": ""}}, 200)],
        ("POST", "/variable"): [("POST", "/variable", {"payload": {"target": "outliers"}}, 200)],
        ("POST", "/tag-keys"): [("POST", "/tag-keys", {}, 200)],
        ("POST", "/tag-values"): [("POST", "/tag-values", {"key": "entry"}, 200)],
        ("GET", "/ui/"): [("GET", "/ui/", None, 200)],
        ("GET", "/ui/{path}"): [("GET", "/ui/does-not-exist.js", None, 404)],
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(calls)
    for (method, template), requests in calls.items():
        for m, path, body, expected in requests:
            status, answer = srv.request(m, path, body)
            assert status == expected, (m, path, status, answer)
            check(doc, method, template, status, answer)
            if doc["paths"][template][method.lower()].get("security") != [] and srv.token:
                status, answer = srv.request(m, path, body, auth=False)
                assert status == 401
                check(doc, method, template, status, answer)


HEX = "0123456789abcdefABCDEF"
junk_text = st.text(alphabet=string.printable, max_size=40)


@FAST
@given(trace_id=st.one_of(st.text(alphabet=HEX, min_size=30, max_size=34), junk_text),
       intervals=st.one_of(st.none(), st.integers(-5, 300).map(str), junk_text))
def test_rca_never_fails(shop, doc, trace_id, intervals):
    path = "/api/v1/traces/" + quote(trace_id, safe="") + "/rca"
    if intervals is not None:
        path += "?" + urlencode({"intervals": intervals})
    if not trace_id or "/" in trace_id or trace_id in (".", ".."):
        return  # a different route (or none): covered by the 404 checks
    status, body = shop.srv.get(path)
    assert status in (200, 400, 404, 409), (path, status, body)
    check(doc, "GET", "/api/v1/traces/{trace_id}/rca", status, body)


params = st.fixed_dictionaries({}, optional={
    "from": st.one_of(st.integers(-10, 2**62).map(str), junk_text, st.just("2026-01-01T00:00:00Z")),
    "to": st.one_of(st.integers(-10, 2**62).map(str), junk_text),
    "entry": st.one_of(st.just(ENTRY), junk_text),
    "min_score": st.one_of(st.floats(allow_nan=True).map(str), junk_text),
    "limit": st.one_of(st.integers(-5, 5000).map(str), junk_text),
})


@FAST
@given(query=params)
def test_outliers_never_fail(shop, doc, query):
    status, body = shop.srv.get("/api/v1/outliers?" + urlencode(query))
    assert status in (200, 400), (query, status, body)
    check(doc, "GET", "/api/v1/outliers", status, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | junk_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(junk_text, children, max_size=3),
    max_leaves=8,
)
targets = st.lists(st.fixed_dictionaries({}, optional={
    "target": st.sampled_from(["rca", "outliers", "annotations", "nope"]) | junk_text,
    "refId": junk_text,
    "payload": json_values | st.fixed_dictionaries({"traceId": junk_text | st.sampled_from(["$traceId", "ab" * 16])}),
    "hide": st.booleans(),
}), max_size=3)


@FAST
@given(body=st.fixed_dictionaries({}, optional={
    "targets": targets | json_values,
    "range": st.fixed_dictionaries({}, optional={"from": junk_text, "to": junk_text}) | json_values,
    "scopedVars": json_values,
    "adhocFilters": json_values,
}))
def test_query_never_fails(shop, doc, body):
    status, answer = shop.srv.post("/query", body)
    assert status in (200, 400), (body, status, answer)
    check(doc, "POST", "/query", status, answer)


@FAST
@given(path=st.sampled_from(["/variable", "/tag-values", "/metric-payload-options", "/options", "/annotations",
                             "/metrics",
                             "/tag-keys", "/search"]),
       body=json_values)
def test_datasource_endpoints_never_fail(shop, doc, path, body):
    status, answer = shop.srv.post(path, body)
    assert status in (200, 400), (path, body, status, answer)
    check(doc, "POST", path, status, answer)


@FAST
@given(trace_id=st.one_of(st.text(alphabet=HEX, min_size=31, max_size=33), junk_text),
       intervals=st.integers(0, 2**32 - 1))
def test_grpc_explain_never_fails(shop, trace_id, intervals):
    import grpc

    from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb
    from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc

    with grpc.insecure_channel(shop.srv.grpc_target) as channel:
        stub = pb_grpc.WhySlowStub(channel)
        try:
            stub.ExplainTrace(pb.ExplainTraceRequest(trace_id=trace_id, intervals=intervals),
                              metadata=[("authorization", f"Bearer {shop.srv.token}")], timeout=30)
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.FAILED_PRECONDITION), (trace_id, exc.code(), exc.details())
