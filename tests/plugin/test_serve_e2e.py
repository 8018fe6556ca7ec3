"""End to end: `whyslow serve` as a subprocess, real OTel SDK OTLP traffic, REST + gRPC + JSON datasource +
annotations + metrics answers for slow traces (one service made slow at a time)."""

from __future__ import annotations

import math
import re
import time
from urllib.parse import quote

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from plugin.demo.shop_traffic import ENTRY, HOME, ShopTraffic
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc
from tests.support.backend import AUTH_TOKEN, GRAFANA_TOKEN, NORMAL_TRACES, SLOW_MS
from tests.support.serve import ServeProcess

AUTH = [("authorization", f"Bearer {AUTH_TOKEN}")]
SLOW_NODE = {"payments": "payments:POST /pay", "cart": "cart:GET /cart"}


def _check_explanation(expl: dict, sent, service: str) -> None:
    """The slowed service ranks first, and the numbers agree with what was sent."""
    top = expl["contributions"][0]
    assert top["service"] == service, [(c["node"], round(c["contribution"], 2)) for c in expl["contributions"]]
    assert expl["entry"] == ENTRY
    assert expl["is_outlier"] and expl["outlier_score"] >= 5.0
    # the target latency is the root span's duration we sent
    assert expl["target_latency_ms"] == pytest.approx(sent.latency_ms, abs=0.01)
    # contributions sum to the outlier score (Shapley efficiency)
    total = sum(c["contribution"] for c in expl["contributions"])
    assert total == pytest.approx(expl["outlier_score"], rel=0.05, abs=0.2)
    assert top["share"] == pytest.approx(top["contribution"] / expl["outlier_score"])
    assert expl["rarer_than"] == pytest.approx(math.exp(min(expl["outlier_score"], 700.0)), rel=1e-6)
    # had the slowed node been normal, the request would have been about SLOW_MS faster
    node = next(c for c in expl["contributions"] if c["node"] == SLOW_NODE[service])
    assert node["node_latency_ms"] > SLOW_MS
    assert node["counterfactual_latency_ms"] < expl["target_latency_ms"] - 0.7 * SLOW_MS
    ranks = [c["rank"] for c in expl["contributions"]]
    assert ranks == list(range(1, len(ranks) + 1))
    contributions = [c["contribution"] for c in expl["contributions"]]
    assert contributions == sorted(contributions, reverse=True)


def test_rest_explains_slow_traces(shop):
    for service, sent in shop.slow.items():
        for s in sent:
            status, expl = shop.srv.get(f"/api/v1/traces/{s.trace_id}/rca")
            assert status == 200, expl
            assert expl["trace_id"] == s.trace_id
            _check_explanation(expl, s, service)


def test_rest_errors(shop):
    srv = shop.srv
    assert srv.get("/api/v1/traces/" + "ab" * 16 + "/rca") [0] == 404
    status, body = srv.get("/api/v1/traces/not-a-trace/rca")
    assert status == 400 and "32 hexadecimal" in body["error"]
    status, body = srv.get(f"/api/v1/traces/{shop.home[0].trace_id}/rca")
    assert status == 409 and "learning" in body["error"]
    status, body = srv.get(f"/api/v1/traces/{shop.slow_ids[0]}/rca", auth=False)
    assert status == 401 and body == {"error": "missing or invalid bearer token"}
    status, body = srv.get(f"/api/v1/traces/{shop.slow_ids[0]}/rca", auth=False,
                           headers={"Authorization": "Bearer wrong"})
    assert status == 401
    assert srv.get("/nope")[0] == 404 and srv.get("/nope")[1] == {"error": "not found"}
    status, body = srv.request("DELETE", "/api/v1/status")
    assert status == 405 and body == {"error": "method not allowed"}
    assert srv.get("/healthz", auth=False) == (200, {"status": "ok"})
    assert srv.get("/readyz", auth=False) == (200, {"status": "ready"})
    status, body = srv.get("/api/v1/outliers?limit=0")
    assert status == 400 and "limit" in body["error"]
    status, body = srv.get("/api/v1/outliers?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z")
    assert status == 400


def test_outliers_listing(shop):
    status, body = shop.srv.get("/api/v1/outliers?limit=1000")
    assert status == 200
    by_id = {o["trace_id"]: o for o in body["outliers"]}
    for service, sent in shop.slow.items():
        for s in sent:
            assert by_id[s.trace_id]["root_cause_service"] == service
            assert by_id[s.trace_id]["time_ms"] == s.start_unix_nano // 1_000_000
    times = [o["time_ms"] for o in body["outliers"]]
    assert times == sorted(times, reverse=True)
    # filters: time range, entry, score, limit
    first = min(s.start_unix_nano for s in shop.slow["cart"]) // 1_000_000
    status, body = shop.srv.get(f"/api/v1/outliers?from={first}&entry={quote(ENTRY)}&min_score=5&limit=10")
    assert {o["trace_id"] for o in body["outliers"]} == {s.trace_id for s in shop.slow["cart"]}
    status, body = shop.srv.get("/api/v1/outliers?from=now-1h&to=now")
    assert {o["trace_id"] for o in body["outliers"]} == set(shop.slow_ids)
    status, body = shop.srv.get("/api/v1/outliers?to=now-1h")
    assert status == 200 and body["outliers"] == []
    status, body = shop.srv.get("/api/v1/outliers?limit=2")
    assert len(body["outliers"]) == 2
    status, body = shop.srv.get(f"/api/v1/outliers?entry={quote(HOME)}")
    assert status == 200 and body["outliers"] == []


def test_graph_and_status(shop):
    status, g = shop.srv.get(f"/api/v1/graph?entry={quote(ENTRY)}")
    assert status == 200
    ids = {n["id"] for n in g["nodes"]}
    assert {"frontend:GET /checkout", "payments:POST /pay", "cart:GET /cart", "postgresql:SELECT orders",
            "net:payments:POST /pay", "net:cart:GET /cart"} <= ids
    assert {"source": "payments:POST /pay", "target": "net:payments:POST /pay"} in g["causal_edges"]
    assert {"caller": "net:payments:POST /pay", "callee": "payments:POST /pay"} in g["call_edges"]
    db = next(n for n in g["nodes"] if n["id"] == "postgresql:SELECT orders")
    assert db["kind"] == "db" and db["stats"]["traces"] >= NORMAL_TRACES
    assert 5 < db["stats"]["p50_ms"] < 20
    status, body = shop.srv.get("/api/v1/graph")
    assert status == 400 and ENTRY in body["error"]  # two entry points: it must be named
    assert shop.srv.get("/api/v1/graph?entry=nope:x")[0] == 404
    status, st = shop.srv.get("/api/v1/status")
    models = {m["entry"]: m for m in st["models"]}
    assert models[ENTRY]["state"] == "ready" and models[ENTRY]["rows"] >= 100
    assert models[ENTRY]["fit_seconds"] > 0 and models[ENTRY]["fitted_at"] > 0
    assert models[HOME]["state"] == "learning" and models[HOME]["traces_seen"] == 3
    assert st["detector"]["outliers"] >= len(shop.slow_ids)
    assert st["annotations"]["sent"] >= len(shop.slow_ids)


def test_metrics_count_what_was_sent(shop):
    status, text = shop.srv.get("/metrics")
    assert status == 200

    def value(name: str, labels: str = "") -> float:
        pattern = re.escape(name + (("{" + labels + "}") if labels else "")) + r" ([0-9.e+]+)"
        match = re.search(pattern, text)
        assert match, name + labels
        return float(match.group(1))

    total_traces = NORMAL_TRACES + len(shop.home) + len(shop.slow_ids)
    assert value("whyslow_spans_total", 'outcome="received"') == shop.traffic.spans_sent
    assert value("whyslow_spans_total", 'outcome="accepted"') == shop.traffic.spans_sent
    assert value("whyslow_spans_total", 'outcome="dropped"') == 0
    assert value("whyslow_spans_total", 'outcome="rejected"') == 0
    assert value("whyslow_traces_total", f'entry="{ENTRY}"') == NORMAL_TRACES + len(shop.slow_ids)
    assert value("whyslow_pipeline_traces_total", 'outcome="stored"') == total_traces
    assert value("whyslow_outliers_total", f'entry="{ENTRY}"') == len(shop.slow_ids)
    assert value("whyslow_fit_seconds_count") >= 1
    assert value("whyslow_attribution_seconds_count") >= len(shop.slow_ids)
    # one annotation per explained outlier, plus any regression the continuous detection found meanwhile (the
    # slow payments burst may cross its threshold when a watch tick falls after it: timing)
    regressions = len(_regression_annotations(shop))
    sent = value("whyslow_annotations_total", 'outcome="sent"')
    assert len(shop.slow_ids) <= sent <= len(shop.slow_ids) + regressions
    assert value("whyslow_annotations_total", 'outcome="retried"') == 1
    assert shop.srv.get("/metrics", auth=False)[0] == 401


def _regression_annotations(shop) -> list[dict]:
    return [body for body in shop.grafana.received if "regression" in body["tags"]]


def test_annotations_pushed(shop):
    assert shop.grafana.problems == []
    outliers = [body for body in shop.grafana.received if "regression" not in body["tags"]]
    assert len(outliers) == len(shop.slow_ids)
    for body in _regression_annotations(shop):  # continuous detection, if it fired, names the slowed service
        assert any(f"root-cause:{service}" in body["tags"] for service in shop.slow), body
    by_trace = {}
    for body in outliers:
        match = re.search(r"[0-9a-f]{32}", body["text"])
        by_trace[match.group(0)] = body
        assert body["dashboardUID"] == "whyslow-rca" and body["panelId"] == 2
        assert "whyslow" in body["tags"]
    for service, sent in shop.slow.items():
        for s in sent:
            body = by_trace[s.trace_id]
            assert f"root-cause:{service}" in body["tags"]
            assert body["time"] == s.start_unix_nano // 1_000_000
            assert service in body["text"]


def test_tokens_never_logged(shop):
    log = shop.srv.log
    assert "whyslow serving" in log
    assert AUTH_TOKEN not in log and GRAFANA_TOKEN not in log


def _stub(shop):
    channel = grpc.insecure_channel(shop.srv.grpc_target)
    return channel, pb_grpc.WhySlowStub(channel)


def test_grpc_explain_and_errors(shop):
    channel, stub = _stub(shop)
    with channel:
        for service, sent in shop.slow.items():
            for s in sent:
                msg = stub.ExplainTrace(pb.ExplainTraceRequest(trace_id=s.trace_id), metadata=AUTH, timeout=30)
                assert msg.contributions[0].service == service
                assert msg.trace_id == s.trace_id and msg.is_outlier
                assert msg.target_latency_ms == pytest.approx(s.latency_ms, abs=0.01)
                assert sum(c.contribution for c in msg.contributions) == pytest.approx(msg.outlier_score, rel=0.05,
                                                                                       abs=0.2)
                assert msg.summary.startswith(ENTRY)
        cases = [
            ("ab" * 16, AUTH, grpc.StatusCode.NOT_FOUND),
            ("xyz", AUTH, grpc.StatusCode.INVALID_ARGUMENT),
            (shop.home[0].trace_id, AUTH, grpc.StatusCode.FAILED_PRECONDITION),
            (shop.slow_ids[0], [], grpc.StatusCode.UNAUTHENTICATED),
            (shop.slow_ids[0], [("authorization", "Bearer nope")], grpc.StatusCode.UNAUTHENTICATED),
        ]
        for trace_id, metadata, code in cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.ExplainTrace(pb.ExplainTraceRequest(trace_id=trace_id), metadata=metadata, timeout=10)
            assert err.value.code() == code, (trace_id, err.value.details())
        with pytest.raises(grpc.RpcError) as err:
            stub.ExplainTrace(pb.ExplainTraceRequest(trace_id=shop.slow_ids[0], intervals=1), metadata=AUTH)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_list_graph_watch(shop):
    channel, stub = _stub(shop)
    with channel:
        resp = stub.ListOutliers(pb.ListOutliersRequest(limit=1000), metadata=AUTH, timeout=10)
        by_id = {o.trace_id: o for o in resp.outliers}
        for service, sent in shop.slow.items():
            for s in sent:
                assert by_id[s.trace_id].root_cause_service == service
        g = stub.GetCausalGraph(pb.GetCausalGraphRequest(entry=ENTRY), metadata=AUTH, timeout=10)
        assert g.model == "ready" and len(g.nodes) == 6 and len(g.causal_edges) == 5
        with pytest.raises(grpc.RpcError) as err:
            stub.GetCausalGraph(pb.GetCausalGraphRequest(), metadata=AUTH, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # WatchOutliers streamed every explained slow trace as it happened
    assert shop.watch_errors == []
    watched = {m.trace_id: m for m in shop.watched}
    for service, sent in shop.slow.items():
        for s in sent:
            assert watched[s.trace_id].contributions[0].service == service


def test_grpc_health_and_reflection(shop):
    channel = grpc.insecure_channel(shop.srv.grpc_target)
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "whyslow.v1.WhySlow"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)  # no token needed
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              metadata=AUTH, timeout=10)
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"whyslow.v1.WhySlow", "grpc.health.v1.Health"} <= names


def test_restart_keeps_models_and_explanations(tmp_path):
    """Stop and start on the same data dir: the model answers at once, explanations are still there."""
    settings = dict(min_traces=50, window=500, refit_interval_s=3600, trace_timeout_s=0.3)
    with ServeProcess(tmp_path / "data", **settings) as srv:
        traffic = ShopTraffic(srv.otlp_http, protocol="http", seed=5)
        traffic.send(60)
        srv.wait_for(lambda: [m for m in srv.get("/api/v1/status")[1]["models"] if m["state"] == "ready"],
                     timeout=60)
        slow = traffic.send(2, slow="payments", slow_ms=SLOW_MS)
        before = srv.wait_for(
            lambda: [b for s in slow if (b := srv.get(f"/api/v1/traces/{s.trace_id}/rca")[1]).get("is_outlier")]
            if len(srv.get("/api/v1/outliers")[1]["outliers"]) == 2 else None, timeout=60)
        model_before = srv.get("/api/v1/status")[1]["models"][0]
        traffic.close()
    assert srv.returncode == 0
    assert "stopped" in srv.log
    t0 = time.monotonic()
    with ServeProcess(tmp_path / "data", **settings) as again:
        status, st = again.get("/api/v1/status")
        model = st["models"][0]
        assert model["state"] == "ready" and model["fitted_at"] == model_before["fitted_at"]
        assert model["rows"] == model_before["rows"]
        for expl in before:
            status, after = again.get(f"/api/v1/traces/{expl['trace_id']}/rca")
            assert status == 200 and after == expl
        assert {o["trace_id"] for o in again.get("/api/v1/outliers")[1]["outliers"]} == {s.trace_id for s in slow}
    assert time.monotonic() - t0 < 30
    assert again.returncode == 0


def test_grpc_watchers_are_bounded(shop):
    """Each WatchOutliers stream holds a worker thread: beyond the limit new ones are refused, queries still run."""
    channel, stub = _stub(shop)
    with channel:
        streams = [stub.WatchOutliers(pb.WatchOutliersRequest(entry=ENTRY), metadata=AUTH) for _ in range(16)]
        time.sleep(1.0)
        extra = stub.WatchOutliers(pb.WatchOutliersRequest(), metadata=AUTH, timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            next(extra)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        msg = stub.ExplainTrace(pb.ExplainTraceRequest(trace_id=shop.slow_ids[0]), metadata=AUTH, timeout=10)
        assert msg.trace_id == shop.slow_ids[0]
        for stream in streams:
            stream.cancel()
        time.sleep(1.5)
        again = stub.WatchOutliers(pb.WatchOutliersRequest(), metadata=AUTH, timeout=1.5)
        with pytest.raises(grpc.RpcError) as err:
            next(again)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # admitted, nothing new to stream
