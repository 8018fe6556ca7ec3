"""A partial, modest fault during drifting traffic, end to end through `whyslow serve` at its defaults.

Real OTLP from the OpenTelemetry SDK: 40 minutes of checkout traffic whose latency drifts upward (every service's
time x1.00 -> x1.04), then 5 minutes (x1.04 -> x1.05) in which the frontend's own time doubles on 5 % of the
requests. No request is slow enough to be an outlier at serve's 1-in-10,000 threshold, yet GET /api/v1/incident
names the frontend for the fault window; a window without the fault names nobody.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest

from plugin.demo.shop_traffic import ENTRY, ShopTraffic
from tests.support.backend import GRAFANA_TOKEN, GrafanaStandIn
from tests.support.serve import ServeProcess

MIN_NS = 60 * 10**9
FRONTEND_OWN_MS = 6.0  # 2 + 1 + 3 ms: the frontend's own time around its two calls (plugin.demo.shop_traffic)


class DriftingShop(ShopTraffic):
    """The test shop with every latency scaled by ``scale`` (load drift moves all services together)."""

    scale = 1.0

    def _ms(self, median: float) -> float:
        return super()._ms(median) * self.scale


def send_drifting(shop: DriftingShop, n: int, start_ns: int, spacing_s: float, scale: tuple[float, float],
                  fault_fraction: float = 0.0) -> list[Any]:
    """``n`` checkouts from ``start_ns``; the scale moves linearly; on ``fault_fraction`` of them the frontend's
    own time is doubled (its own time drawn once more and added)."""
    sent = []
    for i in range(n):
        shop.scale = scale[0] + (scale[1] - scale[0]) * i / max(n - 1, 1)
        slow = shop.rng.random() < fault_fraction
        extra = shop._ms(FRONTEND_OWN_MS) if slow else 0.0
        sent.append((shop.one(start_ns + int(i * spacing_s * 1e9), slow="frontend" if slow else None,
                              slow_ms=extra), slow))
    shop.flush()
    return sent


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> Any:
    grafana = GrafanaStandIn(GRAFANA_TOKEN)
    srv = ServeProcess(tmp_path_factory.mktemp("incident-shift") / "data", env={"WHYSLOW_GRAFANA_TOKEN": GRAFANA_TOKEN},
                       trace_timeout_s=0.3, grafana_url=grafana.url).start()
    srv.grafana = grafana
    shop = DriftingShop(srv.otlp_grpc, seed=31)
    try:
        now = time.time_ns()
        base_start, fault_start = now - 45 * MIN_NS, now - 5 * MIN_NS
        base = send_drifting(shop, 400, base_start, 6.0, (1.0, 1.04))
        fault = send_drifting(shop, 300, fault_start, 1.0, (1.04, 1.05), fault_fraction=0.05)
        srv.wait_for(lambda: _scored(srv) >= 700, timeout=120)
        srv.shop = shop
        yield srv, base, fault, base_start, fault_start
    finally:
        shop.close()
        srv.stop()
        grafana.close()


def _scored(srv: ServeProcess) -> int:
    status, body = srv.get("/api/v1/status")
    return int(body["detector"].get("scored", 0)) if status == 200 else 0


def test_partial_fault_is_named_though_no_trace_is_an_outlier(drifting):
    srv, _, fault, _, fault_start = drifting
    assert sum(slow for _, slow in fault) >= 8  # the fault touched ~5 % of the 300 requests
    lo, hi = fault_start // 1_000_000, fault_start // 1_000_000 + 5 * 60_000
    status, outliers = srv.get("/api/v1/outliers?" + urlencode({"from": lo, "to": hi}))
    assert status == 200 and outliers["outliers"] == [], outliers  # no single trace crossed the threshold
    status, body = srv.get("/api/v1/incident?" + urlencode({"from": lo, "to": hi}))
    assert status == 200, body
    from tests.support.openapi import check

    _, doc = srv.get("/openapi.json", auth=False)
    check(doc, "GET", "/api/v1/incident", status, body)
    assert body["outliers"] == 0 and body["shift"]["changed"]
    assert body["services"][0]["service"] == "frontend", body["services"]
    top = body["shift"]["nodes"][0]
    assert top["node"] == ENTRY and top["score"] >= body["shift"]["min_score"]
    # the drift moved every node alike: the common ratio of medians is the traffic's, window x1.045 against
    # x1.025 in the 30 minutes before it
    assert body["shift"]["drift"] == pytest.approx(1.045 / 1.025, abs=0.015)
    assert body["baseline"]["to_ms"] == lo and body["baseline"]["from_ms"] == lo - 30 * 60_000
    assert ENTRY in body["entries"]


def test_a_window_without_change_names_nobody(drifting):
    srv, _, _, base_start, _ = drifting
    lo = base_start // 1_000_000 + 30 * 60_000  # 5 minutes of the drifting baseline traffic, 30 minutes in
    status, body = srv.get("/api/v1/incident?" + urlencode({"from": lo, "to": lo + 5 * 60_000}))
    assert status == 200, body
    assert body["services"] == [] and body["outliers"] == 0 and not body["shift"]["changed"], body["shift"]
    assert body["window_traces"] == 50  # 5 minutes at one checkout every 6 s


def test_the_incident_table_of_the_data_source_names_the_fault(drifting):
    srv, _, _, _, fault_start = drifting
    lo = fault_start // 1_000_000
    query = {"range": {"from": lo, "to": lo + 5 * 60_000}, "targets": [{"target": "incident", "refId": "A"}]}
    status, frames = srv.post("/query", query)
    assert status == 200, frames
    table = frames[0]
    services = [row[0] for row in table["rows"]]
    assert services and services[0] == "frontend", table


def test_continuous_detection_lists_annotates_and_streams_the_regression(drifting):
    """Every minute the watch compares each entry point's last 5 minutes with its baseline. After the partial
    fault window, the frontend's own time doubles on every request (a sustained regression, 200 requests in a
    minute): it is listed, annotated in Grafana as a region tagged with the frontend, and published like an
    outlier (the outlier hub and the annotation pusher get the same payload)."""
    srv, _, _, _, fault_start = drifting
    start = max(time.time_ns() - 60 * 10**9, fault_start + 5 * MIN_NS + 10**9)  # after the partial window
    send_drifting(srv.shop, 200, start, 0.25, (1.05, 1.05), fault_fraction=1.0)

    def listed() -> list[Any]:
        status, body = srv.get("/api/v1/incidents")
        assert status == 200, body
        return body["incidents"]

    found = srv.wait_for(listed, timeout=150, interval=2.0)
    top = found[0]
    assert top["kind"] == "regression" and top["entry"] == ENTRY and top["lead_service"] == "frontend", top
    assert top["outlier_score"] >= np.log(1000) and top["services"][0]["service"] == "frontend"
    assert top["to_ms"] - top["time_ms"] == 5 * 60_000 and top["to_ms"] * 1_000_000 >= start
    from tests.support.openapi import check

    _, doc = srv.get("/openapi.json", auth=False)
    check(doc, "GET", "/api/v1/incidents", 200, {"incidents": found})
    srv.wait_for(lambda: srv.grafana.received, timeout=30)
    (body,) = [b for b in srv.grafana.received if "regression" in b["tags"]]
    assert "root-cause:frontend" in body["tags"] and body["timeEnd"] - body["time"] == 5 * 60_000
    assert body["text"].startswith(f"Regression of {ENTRY}: frontend")
