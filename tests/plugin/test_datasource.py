"""The simpod-json-datasource protocol against the live server: the explanation frames of ARCHITECTURE.md,
status rows, outliers table, annotations, variables, ad-hoc filters."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from plugin.demo.shop_traffic import ENTRY, HOME

SUMMARY = ["status", "message", "trace_id", "entry", "target_latency_ms", "outlier_score", "rarer_than",
           "model_traces"]
CONTRIB = ["rank", "node", "service", "operation", "kind", "contribution", "share", "contribution_lo",
           "contribution_hi", "own_latency_ms", "node_latency_ms", "counterfactual_latency_ms"]
GRAPH = ["source", "target", "source_contribution"]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _frames(resp: list) -> dict[str, dict]:
    """Find each frame by its fields, as the panel does."""
    out = {}
    for frame in resp:
        assert frame["type"] == "table"
        names = [c["text"] for c in frame["columns"]]
        for key, fields in (("summary", SUMMARY), ("contributions", CONTRIB), ("graph", GRAPH)):
            if names == fields:
                out[key] = {"rows": [dict(zip(names, row, strict=True)) for row in frame["rows"]], "frame": frame}
    return out


def _rca(shop, payload=None, scoped=None, target="rca"):
    body = {"range": {"from": "2020-01-01T00:00:00.000Z", "to": "2100-01-01T00:00:00.000Z"},
            "targets": [{"refId": "A", "target": target, "payload": payload or {}}]}
    if scoped is not None:
        body["scopedVars"] = scoped
    status, resp = shop.srv.post("/query", body)
    assert status == 200, resp
    return _frames(resp)


def test_connection_and_metrics(shop):
    assert shop.srv.get("/") == (200, {"status": "ok"})
    assert shop.srv.get("/", auth=False)[0] == 401
    status, metrics = shop.srv.post("/metrics", {})
    assert status == 200 and [m["value"] for m in metrics] == ["rca", "outliers", "incident", "annotations"]
    assert metrics[0]["payloads"][0]["name"] == "traceId"
    status, options = shop.srv.post("/metric-payload-options", {"metric": "outliers", "name": "entry", "payload": {}})
    assert status == 200 and {"label": ENTRY, "value": ENTRY} in options
    assert shop.srv.post("/search", {"target": ""}) == (200, ["rca", "outliers", "incident", "annotations"])


def test_rca_frames(shop):
    for service, sent in shop.slow.items():
        s = sent[0]
        frames = _rca(shop, {"traceId": s.trace_id})
        assert set(frames) == {"summary", "contributions", "graph"}
        summary = frames["summary"]["rows"][0]
        assert summary["status"] == "ok" and summary["trace_id"] == s.trace_id and summary["entry"] == ENTRY
        assert summary["target_latency_ms"] == s.latency_ms or abs(summary["target_latency_ms"] - s.latency_ms) < 0.01
        assert summary["model_traces"] >= 100
        rows = frames["contributions"]["rows"]
        assert rows[0]["service"] == service and rows[0]["rank"] == 1
        status, expl = shop.srv.get(f"/api/v1/traces/{s.trace_id}/rca")
        assert [r["node"] for r in rows] == [c["node"] for c in expl["contributions"]]
        assert [r["contribution"] for r in rows] == [c["contribution"] for c in expl["contributions"]]
        assert len(frames["graph"]["rows"]) == len(expl["graph"]) == 5
        assert frames["summary"]["frame"]["refId"] == "A"


def test_rca_trace_id_from_scoped_vars(shop):
    s = shop.slow["cart"][0]
    frames = _rca(shop, {"traceId": "$traceId"}, scoped={"traceId": {"text": s.trace_id, "value": s.trace_id}})
    assert frames["summary"]["rows"][0]["status"] == "ok"
    assert frames["contributions"]["rows"][0]["service"] == "cart"
    # Grafana's older [[var]] syntax, left unresolved, is read from scopedVars too (was 'unknown_trace')
    frames = _rca(shop, {"traceId": "[[traceId]]"}, scoped={"traceId": {"value": s.trace_id}})
    assert frames["summary"]["rows"][0]["status"] == "ok"


def test_rca_status_rows(shop):
    cases = [
        ({}, "no_trace"),
        ({"traceId": "$traceId"}, "no_trace"),
        ({"traceId": "[[traceId]]"}, "no_trace"),
        ({"traceId": "zz-not-hex"}, "unknown_trace"),
        ({"traceId": "ab" * 16}, "unknown_trace"),
        ({"traceId": shop.home[0].trace_id}, "learning"),
        ({"traceId": shop.normal[-1].trace_id}, "not_outlier"),
        ({"traceId": shop.slow_ids[0], "intervals": 1}, "error"),
        ({"traceId": shop.slow_ids[0], "intervals": "x"}, "error"),
    ]
    for payload, expected in cases:
        frames = _rca(shop, payload)
        summary = frames["summary"]["rows"][0]
        assert summary["status"] == expected, (payload, summary)
        assert summary["message"]
        if expected != "not_outlier":
            assert frames["contributions"]["rows"] == [] and frames["graph"]["rows"] == []
        else:
            assert frames["contributions"]["rows"]


def test_outliers_table_and_annotations(shop):
    first = min(s.start_unix_nano for v in shop.slow.values() for s in v) // 1_000_000
    body = {"range": {"from": _iso(first - 1), "to": _iso(first + 60_000)},
            "targets": [{"refId": "T", "target": "outliers", "payload": {"entry": ENTRY}},
                        {"refId": "N", "target": "annotations", "payload": {}},
                        {"refId": "H", "target": "outliers", "hide": True}]}
    status, resp = shop.srv.post("/query", body)
    assert status == 200 and len(resp) == 2
    table, notes = resp
    names = [c["text"] for c in table["columns"]]
    assert names[0] == "time" and table["columns"][0]["type"] == "time"
    rows = [dict(zip(names, r, strict=True)) for r in table["rows"]]
    assert {r["trace_id"] for r in rows} == set(shop.slow_ids)
    for r in rows:
        service = next(k for k, v in shop.slow.items() if r["trace_id"] in {s.trace_id for s in v})
        assert r["root_cause_service"] == service
    anames = [c["text"] for c in notes["columns"]]
    assert anames == ["time", "timeEnd", "title", "text", "tags"]
    arows = [dict(zip(anames, r, strict=True)) for r in notes["rows"]]
    assert len(arows) == len(shop.slow_ids)
    for a in arows:
        assert a["tags"].split(",")[0] == "whyslow" and a["tags"].split(",")[1].startswith("root-cause:")
        assert a["timeEnd"] >= a["time"]
    # legacy SimpleJson annotations endpoint
    status, legacy = shop.srv.post("/annotations", {"range": body["range"],
                                                    "annotation": {"name": "slow", "enable": True, "query": ""}})
    assert status == 200 and len(legacy) == len(shop.slow_ids)
    assert all("whyslow" in a["tags"] and a["annotation"]["name"] == "slow" for a in legacy)
    # ad-hoc filter on the root-cause service
    body = {"range": body["range"], "targets": [{"refId": "T", "target": "outliers"}],
            "adhocFilters": [{"key": "root_cause_service", "operator": "=", "value": "cart"}]}
    table = shop.srv.post("/query", body)[1][0]
    assert len(table["rows"]) == len(shop.slow["cart"])


def test_incident_table_names_the_service_behind_each_window(shop):
    for service, sent in shop.slow.items():
        lo = min(s.start_unix_nano for s in sent) // 1_000_000
        hi = max(s.start_unix_nano for s in sent) // 1_000_000 + 1
        body = {"range": {"from": _iso(lo), "to": _iso(hi)},
                "targets": [{"refId": "I", "target": "incident", "payload": {"entry": ENTRY}}]}
        status, resp = shop.srv.post("/query", body)
        assert status == 200 and len(resp) == 1
        names = [c["text"] for c in resp[0]["columns"]]
        assert names == ["service", "share", "top_node", "first_in", "outliers"]
        rows = [dict(zip(names, r, strict=True)) for r in resp[0]["rows"]]
        assert rows[0]["service"] == service and rows[0]["outliers"] == len(sent) and rows[0]["share"] > 0.5
        _, api = shop.srv.get("/api/v1/incident?" + urlencode({"entry": ENTRY, "from": lo, "to": hi}))
        assert [r["service"] for r in rows] == [s["service"] for s in api["services"]]
    bad = {"range": {"from": "now", "to": "now-1h"}, "targets": [{"refId": "I", "target": "incident"}]}
    status, resp = shop.srv.post("/query", bad)
    assert status == 200 and resp[0]["columns"] == [{"text": "error", "type": "string"}]


def test_variable_and_tags(shop):
    status, values = shop.srv.post("/variable", {"payload": {"target": "outliers"}, "range": {}})
    assert status == 200 and {v["__value"] for v in values} == set(shop.slow_ids)
    status, values = shop.srv.post("/variable", {"payload": {"target": "entries"}})
    assert {v["__value"] for v in values} == {ENTRY, HOME}
    assert shop.srv.post("/variable", {"payload": {"target": "bogus"}})[0] == 400
    status, keys = shop.srv.post("/tag-keys", {})
    assert status == 200 and {k["text"] for k in keys} == {"entry", "root_cause_service"}
    status, values = shop.srv.post("/tag-values", {"key": "root_cause_service"})
    assert {v["text"] for v in values} == {"payments", "cart"}
    assert shop.srv.post("/tag-values", {"key": "nope"})[0] == 400


def test_bad_bodies(shop):
    status, body = shop.srv.request("POST", "/query", None, headers={"Content-Type": "application/json"})
    assert status == 200 and body == []
    req = shop.srv.request
    status, body = req("POST", "/query", "not json")  # a JSON string, not an object
    assert status == 400 and "object" in body["error"]
    status, body = shop.srv.post("/query", {"targets": "x"})
    assert status == 400
    status, resp = shop.srv.post("/query", {"targets": [{"refId": "A", "target": "what"}]})
    assert status == 200 and resp[0]["columns"][0]["text"] == "error"
