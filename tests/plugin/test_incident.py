"""Incident summary (GET /api/v1/incident, plugin.incident): which service is behind a window's slow traces."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from plugin.demo.shop_traffic import ENTRY
from plugin.incident import explanation_edges, summarize


def payload(contributions: dict[str, tuple[str, str, float]], edges: list[tuple[str, str]]) -> dict:
    """An Explanation payload: node -> (service, kind, contribution), causal edges cause -> effect."""
    ranked = sorted(contributions, key=lambda n: -contributions[n][2])
    return {
        "contributions": [{"node": n, "service": contributions[n][0], "kind": contributions[n][1],
                           "contribution": contributions[n][2]} for n in ranked],
        "graph": [{"source": a, "target": b, "source_contribution": 0.0} for a, b in edges],
    }


# a gateway calling food and three other services; food slow behind the network (its incoming call gap)
EDGES = [("net:food:get", "gw:route"), ("net:auth:check", "gw:route"), ("net:seat:get", "gw:route"),
         ("net:price:get", "gw:route"), ("food:get", "net:food:get"), ("auth:check", "net:auth:check"),
         ("seat:get", "net:seat:get"), ("price:get", "net:price:get")]


def network_delay(slow_gap: float, gw_own: float) -> dict:
    return payload({"net:food:get": ("food", "call_gap", slow_gap), "gw:route": ("gw", "span", gw_own),
                    "net:auth:check": ("auth", "call_gap", 0.0), "net:seat:get": ("seat", "call_gap", 0.0),
                    "net:price:get": ("price", "call_gap", -0.1), "food:get": ("food", "span", 0.0),
                    "auth:check": ("auth", "span", 0.0), "seat:get": ("seat", "span", 0.0),
                    "price:get": ("price", "span", 0.0)}, EDGES)


def test_edges_are_read_off_the_explanation_graph():
    edges = explanation_edges(network_delay(8.0, 1.0))
    assert edges == {"net:food:get": ("food", "gw"), "net:auth:check": ("auth", "gw"),
                     "net:seat:get": ("seat", "gw"), "net:price:get": ("price", "gw")}


def test_a_slow_callee_behind_a_gateway_is_named_not_the_gateway():
    """Each outlier votes once; the gateway -> food edge goes mostly to food, whose only incoming edge is slow,
    not to the gateway, whose other three calls are fine (independent computation below)."""
    summary = summarize([network_delay(9.0, 0.5), network_delay(4.5, 0.5)])
    assert summary["outliers"] == 2
    services = {s["service"]: s for s in summary["services"]}
    assert summary["services"][0]["service"] == "food"
    # votes (each outlier's positive contributions normalised): the edge (food, gw) and the gateway's own work
    edge, own = 9.0 / 9.5 + 4.5 / 5.0, 0.5 / 9.5 + 0.5 / 5.0
    # per-edge weights: food = mean over its one incoming edge (half split); gw = own work + mean over its four
    # outgoing edges, three of them without evidence
    w_food, w_gw = edge / 2, own + (edge / 2) / 4
    food = edge * w_food / (w_food + w_gw)
    assert services["food"]["share"] == pytest.approx(food / 2)
    assert services["gw"]["share"] == pytest.approx((own + edge - food) / 2)
    assert sum(s["share"] for s in summary["services"]) == pytest.approx(1.0)
    assert services["food"]["top_node"] == "net:food:get" and services["food"]["first_in"] == 2
    assert summarize([])["services"] == [] and summarize([])["outliers"] == 0


def test_a_caller_whose_calls_are_all_slow_is_named():
    """CPU contention in the gateway: its own work and all four of its calls are slow; each callee has one edge."""
    slow_all = payload({"gw:route": ("gw", "span", 2.0), "net:food:get": ("food", "call_gap", 2.0),
                        "net:auth:check": ("auth", "call_gap", 2.0), "net:seat:get": ("seat", "call_gap", 2.0),
                        "net:price:get": ("price", "call_gap", 2.0), "food:get": ("food", "span", 0.0),
                        "auth:check": ("auth", "span", 0.0), "seat:get": ("seat", "span", 0.0),
                        "price:get": ("price", "span", 0.0)}, EDGES)
    summary = summarize([slow_all])
    assert summary["services"][0]["service"] == "gw"
    assert summary["services"][0]["share"] > 0.5


def test_incident_endpoint_names_the_slow_service_of_each_window(shop):
    from tests.support.openapi import check

    status, doc = shop.srv.get("/openapi.json", auth=False)
    assert status == 200

    def window(sent) -> dict:
        lo = min(s.start_unix_nano for s in sent) // 1_000_000
        hi = max(s.start_unix_nano for s in sent) // 1_000_000 + 1
        status, body = shop.srv.get("/api/v1/incident?" + urlencode({"entry": ENTRY, "from": lo, "to": hi}))
        assert status == 200, body
        check(doc, "GET", "/api/v1/incident", status, body)
        return body

    for service, sent in shop.slow.items():
        body = window(sent)
        assert body["outliers"] == len(sent) and body["entries"] == [ENTRY]
        assert body["services"][0]["service"] == service, body["services"]
        assert body["services"][0]["share"] > 0.5 and body["services"][0]["first_in"] == len(sent)
    status, both = shop.srv.get("/api/v1/incident")
    assert status == 200 and both["outliers"] >= len(shop.slow_ids)
    assert {s["service"] for s in both["services"][:2]} == set(shop.slow)
    status, err = shop.srv.get("/api/v1/incident?from=now&to=now-1h")
    assert status == 400 and "from must not be after to" in err["error"]
