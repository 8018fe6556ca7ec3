"""Error-rate spikes end to end: real OTLP from the OpenTelemetry SDK into `whyslow serve`; payments fails on its own
on 1 % of the requests (the frontend propagates: the request fails) 40 and 25 minutes ago, then on 10 % in the last
few minutes; in every period 2 % of the requests have a failed cart call that the frontend retries (handled). GET /api/v1/regression?stat=error_rate, its gRPC method, the data source's regression target and the
error_rate section of GET /api/v1/incident name payments with the change in percentage points; the frontend and
the call between them, which only propagate, get nothing; the two 1 % periods compared show no change."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import grpc
import pytest

from plugin.demo.shop_traffic import ENTRY, ShopTraffic
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc
from tests.support.openapi import check
from tests.support.serve import ServeProcess

TRACES = 300
MIN_NS = 60 * 10**9


HANDLED = 6  # requests per period whose cart call fails and is retried successfully (the same in every period)


def _period(traffic: ShopTraffic, start: int, failures: int) -> None:
    """TRACES requests over 30 s from ``start``: ``failures`` of them failing in payments, HANDLED with a failed
    cart call that the frontend retries (the request succeeds), spread over the period."""
    traffic.send(TRACES - failures - HANDLED, start=start, spacing_ms=100)
    traffic.send(failures, fail="payments", start=start + 500 * 10**6, spacing_ms=29_000 / failures)
    traffic.send(HANDLED, fail="cart", handled=True, start=start + 700 * 10**6, spacing_ms=29_000 / HANDLED)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # regression queries need no model: min_traces above the traffic keeps the detector idle
    srv = ServeProcess(tmp_path_factory.mktemp("error_rate") / "data", min_traces=5000, window=5000,
                       trace_timeout_s=0.3).start()
    traffic = ShopTraffic(srv.otlp_grpc, seed=29)
    try:
        now = time.time_ns()
        periods = {"base": now - 40 * MIN_NS, "null": now - 25 * MIN_NS, "spike": now - 5 * MIN_NS}
        _period(traffic, periods["base"], 3)
        _period(traffic, periods["null"], 3)
        _period(traffic, periods["spike"], 30)
        srv.wait_for(lambda: srv.stored_traces(ENTRY) >= 3 * TRACES, timeout=120)
        yield srv, {k: v // 10**6 for k, v in periods.items()}
    finally:
        traffic.close()
        srv.stop()


def _query(periods: dict[str, int], baseline: str, window: str, **extra: Any) -> dict[str, Any]:
    return {"entry": ENTRY, "stat": "error_rate", "baseline_from": periods[baseline] - 1000,
            "baseline_to": periods[baseline] + 60_000, "from": periods[window] - 1000,
            "to": periods[window] + 60_000, **extra}


def test_regression_names_the_service_whose_own_failures_rose(live):
    srv, periods = live
    status, r = srv.get("/api/v1/regression?" + urlencode(_query(periods, "base", "spike")))
    assert status == 200, r
    _, doc = srv.get("/openapi.json", auth=False)
    check(doc, "GET", "/api/v1/regression", status, r)
    assert r["stat"] == "error_rate" and r["unit"] == "percentage_points"
    assert r["window"]["traces"] == TRACES and r["baseline"]["traces"] == TRACES
    assert r["baseline_value"] == pytest.approx(1.0) and r["comparison_value"] == pytest.approx(10.0)
    assert r["observed_change"] == pytest.approx(9.0) and r["significant"] and r["observed_change"] > r["noise_floor"]
    top = r["contributions"][0]
    assert top["service"] == "payments" and top["change_kind"] == "own_rate", r["contributions"]
    assert top["contribution"] == pytest.approx(9.0, abs=1.5)
    assert top["own_rate_before"] < 2.0 and top["own_rate_after"] > 7.0
    assert top["contribution_lo"] < top["contribution"] < top["contribution_hi"]
    assert sum(c["contribution"] for c in r["contributions"]) == pytest.approx(r["modelled_change"], abs=1e-9)
    assert abs(r["unexplained"]) < 1.0
    # the frontend and its call to payments only propagate, cart's handled errors did not change: no player, or
    # nothing to speak of
    for c in r["contributions"][1:]:
        assert abs(c["contribution"]) < 0.5, c
    assert not any(c["service"] == "cart" for c in r["contributions"])
    assert r["services"][0]["service"] == "payments" and "payments" in r["summary"]
    again = srv.get("/api/v1/regression?" + urlencode(_query(periods, "base", "spike")))[1]
    assert again["cached"] and again["contributions"] == r["contributions"]


def test_two_periods_at_the_same_rate_show_no_change(live):
    srv, periods = live
    status, r = srv.get("/api/v1/regression?" + urlencode(_query(periods, "base", "null")))
    assert status == 200, r
    assert r["observed_change"] == pytest.approx(0.0) and not r["significant"] and r["contributions"] == []
    assert "no change beyond the noise floor" in r["summary"]


def test_grpc_and_data_source(live):
    srv, periods = live
    q = _query(periods, "base", "spike")
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = pb_grpc.WhySlowStub(channel)
        r = stub.GetRegression(pb.GetRegressionRequest(
            entry=ENTRY, stat="error_rate", baseline_from_unix_ms=q["baseline_from"],
            baseline_to_unix_ms=q["baseline_to"], from_unix_ms=q["from"], to_unix_ms=q["to"], intervals=0),
            timeout=60)
    assert r.unit == "percentage_points" and r.contributions[0].service == "payments"
    assert r.contributions[0].own_rate_after > 7.0 and r.observed_change == pytest.approx(9.0)
    body = {"range": {"from": q["from"], "to": q["to"]},
            "targets": [{"refId": "A", "target": "regression",
                         "payload": {"entry": ENTRY, "stat": "error_rate", "baseline_from": q["baseline_from"],
                                     "baseline_to": q["baseline_to"]}}]}
    status, frames = srv.post("/query", body)
    assert status == 200
    summary, rows = frames
    row = dict(zip([c["text"] for c in summary["columns"]], summary["rows"][0], strict=True))
    assert row["status"] == "ok" and row["unit"] == "percentage_points" and row["significant"] == 1
    first = dict(zip([c["text"] for c in rows["columns"]], rows["rows"][0], strict=True))
    assert first["service"] == "payments"


def test_incident_attributes_the_error_rate_beside_the_per_trace_evidence(live):
    srv, periods = live
    # the window: the spike; the default baseline: the 30 minutes before it (the second 1 % period)
    status, body = srv.get("/api/v1/incident?" + urlencode({"from": periods["spike"] - 60_000,
                                                              "to": periods["spike"] + 60_000}))
    assert status == 200, body
    _, doc = srv.get("/openapi.json", auth=False)
    check(doc, "GET", "/api/v1/incident", status, body)
    errors = body["error_rate"]
    assert errors["significant"] and errors["services"][0]["service"] == "payments", errors
    assert errors["services"][0]["extra_failed_requests"] == pytest.approx(27, abs=5)
    [entry] = errors["entries"]
    assert entry["entry"] == ENTRY and entry["observed_change"] == pytest.approx(9.0)
    assert entry["contributions"][0]["service"] == "payments"
    # the second 1 % period against the first: attributed, no change, nobody named
    status, quiet = srv.get("/api/v1/incident?" + urlencode({"from": periods["null"] - 1000,
                                                               "to": periods["null"] + 60_000}))
    assert status == 200 and not quiet["error_rate"]["significant"] and quiet["error_rate"]["services"] == []
    [entry] = quiet["error_rate"]["entries"]
    assert entry["observed_change"] == pytest.approx(0.0) and entry["contributions"] == []


def test_bad_error_rate_queries_are_clear_errors(live):
    srv, periods = live
    status, body = srv.get("/api/v1/regression?" + urlencode(
        {"entry": ENTRY, "stat": "error_rate", "from": "2020-01-01T00:00:00Z", "to": "2020-01-01T00:15:00Z"}))
    assert status == 400 and "holds 0 complete traces" in body["error"]
    status, body = srv.get("/api/v1/regression?" + urlencode(_query(periods, "base", "spike", intervals=1)))
    assert status == 400 and "intervals" in body["error"]


def test_mcp_regression_tool_reads_the_error_rate(live):
    from plugin.mcp_rest import WhySlowREST
    from plugin.mcp_tools import TOOLS, Links, available, call

    srv, periods = live
    q = _query(periods, "base", "spike")
    rest = WhySlowREST(srv.http_url)
    tools = {t.name: t for t in available(rest, TOOLS)}
    text = call(tools["regression"], rest, Links(rest.base_url), entry=ENTRY, stat="error_rate",
                since=str(q["from"]), until=str(q["to"]), baseline_from=str(q["baseline_from"]),
                baseline_to=str(q["baseline_to"]))
    lines = text.splitlines()
    assert lines[0].startswith(f"error_rate of {ENTRY} went from 1.00% (baseline, given) to 10.00%: "
                               "+9.00 percentage points observed"), lines[0]
    assert lines[2].startswith("1. payments: +") and "percentage points" in lines[2]
