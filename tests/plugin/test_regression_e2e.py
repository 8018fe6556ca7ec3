"""GET /api/v1/regression, POST /api/v1/whatif, their gRPC methods and the data source's 'regression' target,
end to end: real OTLP from the OpenTelemetry SDK into `whyslow serve`, normal traffic 40 minutes ago, then a
sustained slowdown of cart (+25 ms own time on every request) in the last few minutes; a little normal traffic a
day earlier (12 minutes before this time of day) decides which default baseline a window gets. Two more windows
a day and two hours ago: before and after payments started calling a new service (fraud), a new call edge."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import grpc
import pytest

from plugin.demo.shop_traffic import ENTRY, MS, ShopTraffic
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2 as pb
from plugin.grpc_gen.whyslow.v1 import whyslow_pb2_grpc as pb_grpc
from tests.support.serve import ServeProcess

SLOW_MS = 25.0
TRACES = 300
DAY_BEFORE = 60
LAST_10_MIN = {"from": "now-10m", "to": "now"}  # a day earlier holds nothing: the baseline is the hour before
TOKEN = "regression-test-token-41"
NEW_CALL = 120  # traces per window before / after payments calls fraud
NEW_CALL_AGO_MIN = 24 * 60 + 130


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # no model is needed for a regression query: min_traces above the traffic keeps the detector idle
    srv = ServeProcess(tmp_path_factory.mktemp("regression") / "data", auth_token=TOKEN, min_traces=5000,
                       window=5000, trace_timeout_s=0.3).start()
    traffic = ShopTraffic(srv.otlp_grpc, seed=23, headers={"authorization": f"Bearer {TOKEN}"})
    try:
        now = time.time_ns()
        traffic.send(DAY_BEFORE, start=now - (24 * 60 + 12) * 60 * 10**9, spacing_ms=100)
        base = traffic.send(TRACES, start=now - 40 * 60 * 10**9, spacing_ms=100)
        slow = traffic.send(TRACES, slow="cart", slow_ms=SLOW_MS, start=now - 5 * 60 * 10**9, spacing_ms=100)
        before = traffic.send(NEW_CALL, start=now - NEW_CALL_AGO_MIN * 60 * 10**9, spacing_ms=100)
        after = traffic.send(NEW_CALL, start=now - (NEW_CALL_AGO_MIN - 20) * 60 * 10**9, spacing_ms=100, fraud=True)
        srv.wait_for(lambda: srv.stored_traces(ENTRY) >= 2 * TRACES + DAY_BEFORE + 2 * NEW_CALL, timeout=90)
        srv.new_call = (before, after)  # type: ignore[attr-defined]
        yield srv, base, slow
    finally:
        traffic.close()
        srv.stop()


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()


def test_default_baseline_is_the_same_window_a_day_earlier(live):
    srv, _, _ = live
    status, r = srv.get("/api/v1/regression?" + urlencode({"entry": ENTRY, "stat": "mean"}))
    assert status == 200, r
    assert r["baseline"]["source"] == "day_before" and r["baseline"]["traces"] == DAY_BEFORE
    assert r["window"]["traces"] == TRACES and r["services"][0]["service"] == "cart"
    assert r["services"][0]["contribution"] == pytest.approx(SLOW_MS, abs=2.5)


def test_hour_before_names_cart_with_its_change_in_ms(live):
    srv, base, slow = live
    status, r = srv.get("/api/v1/regression?" + urlencode({"entry": ENTRY, "stat": "mean", **LAST_10_MIN}))
    assert status == 200, r
    assert r["baseline"]["source"] == "hour_before"  # nothing a day earlier
    assert r["window"]["traces"] == TRACES and r["baseline"]["traces"] == TRACES
    assert r["significant"] and r["services"][0]["service"] == "cart"
    # independent truth: the injected +25 ms of cart's own time on every request moves the mean by 25 ms
    assert r["services"][0]["contribution"] == pytest.approx(SLOW_MS, abs=1.5)
    observed = sum(s.latency_ms for s in slow) / TRACES - sum(s.latency_ms for s in base) / TRACES
    assert r["observed_change"] == pytest.approx(observed, abs=0.01)
    top = r["contributions"][0]
    assert top["service"] == "cart" and top["kind"] == "span"
    assert top["contribution_lo"] < top["contribution"] < top["contribution_hi"]
    assert top["contribution_hi"] - top["contribution_lo"] < 3.0
    assert sum(c["contribution"] for c in r["contributions"]) == pytest.approx(r["modelled_change"], abs=1e-6)
    assert "cart +2" in r["summary"]


def test_p99_with_explicit_windows_and_the_cache(live):
    srv, base, slow = live
    query = {"entry": ENTRY, "baseline_from": base[0].start_unix_nano // MS,
             "baseline_to": _iso(base[-1].start_unix_nano + MS), "from": slow[0].start_unix_nano // MS,
             "to": slow[-1].start_unix_nano // MS + 1, "intervals": 20}
    status, r = srv.get("/api/v1/regression?" + urlencode(query))
    assert status == 200, r
    assert r["stat"] == "p99" and r["baseline"]["source"] == "given" and not r["cached"]
    assert r["services"][0]["service"] == "cart" and r["services"][0]["contribution"] > 15.0
    assert r["observed_change"] > r["noise_floor"]
    again = srv.get("/api/v1/regression?" + urlencode(query))[1]
    assert again["cached"] and again["contributions"] == r["contributions"]


def test_what_if_cart_at_its_baseline(live):
    srv, _, _ = live
    status, w = srv.post("/api/v1/whatif", {"entry": ENTRY, "stat": "mean", "interventions": {"cart": "baseline"},
                                           **LAST_10_MIN})
    assert status == 200, w
    assert w["baseline"]["source"] == "hour_before"
    assert w["change"] == pytest.approx(-SLOW_MS, abs=1.5)
    lo, hi = w["interval"]
    assert lo < w["predicted_value"] < hi
    status, w = srv.post("/api/v1/whatif", {"entry": ENTRY, "stat": "mean", "interventions": {"cart": "-100%"},
                                           "intervals": 0})
    assert status == 200 and w["change"] < -SLOW_MS  # cart's own time gone entirely


def test_grpc_methods_agree_with_rest(live):
    srv, _, _ = live
    rest = srv.get("/api/v1/regression?" + urlencode({"entry": ENTRY, "stat": "mean", **LAST_10_MIN}))[1]
    meta = [("authorization", f"Bearer {TOKEN}")]
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = pb_grpc.WhySlowStub(channel)
        ten = time.time_ns() // MS - 10 * 60 * 1000
        r = stub.GetRegression(pb.GetRegressionRequest(entry=ENTRY, stat="mean", from_unix_ms=ten), metadata=meta,
                               timeout=60)
        assert r.services[0].service == "cart"
        assert r.services[0].contribution == pytest.approx(rest["services"][0]["contribution"], abs=1e-6)
        assert r.baseline.source == "hour_before" and r.window.traces == TRACES
        w = stub.WhatIf(pb.WhatIfRequest(entry=ENTRY, stat="mean", interventions={"cart": "baseline"},
                                         from_unix_ms=ten), metadata=meta, timeout=60)
        assert w.change == pytest.approx(-SLOW_MS, abs=1.5) and len(w.interval) == 2
        with pytest.raises(grpc.RpcError) as err:
            stub.GetRegression(pb.GetRegressionRequest(entry=ENTRY, stat="p101"), metadata=meta, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "between 0 and 1" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.WhatIf(pb.WhatIfRequest(entry=ENTRY, interventions={"nope": "0.5"}), metadata=meta, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_data_source_regression_frames(live):
    srv, _, slow = live
    body = {"range": {"from": _iso(slow[0].start_unix_nano - 4 * 60 * 10**9), "to": _iso(time.time_ns())},
            "targets": [{"refId": "A", "target": "regression", "payload": {"entry": ENTRY, "stat": "mean"}}]}
    status, frames = srv.post("/query", body)
    assert status == 200
    summary, rows = frames
    cols = [c["text"] for c in summary["columns"]]
    row = dict(zip(cols, summary["rows"][0], strict=True))
    assert row["status"] == "ok" and row["significant"] == 1 and row["baseline_source"] == "hour_before"
    table = [dict(zip([c["text"] for c in rows["columns"]], r, strict=True)) for r in rows["rows"]]
    assert table[0]["service"] == "cart" and table[0]["contribution"] == pytest.approx(SLOW_MS, abs=1.5)
    bad = {"range": {"from": "2020-01-01T00:00:00Z", "to": "2020-01-01T00:15:00Z"},
           "targets": [{"target": "regression", "payload": {"entry": ENTRY}}]}
    frames = srv.post("/query", bad)[1]
    assert frames[0]["rows"][0][0] == "error" and "holds 0 complete traces" in frames[0]["rows"][0][1]


def _new_call_query(srv: ServeProcess) -> dict[str, Any]:
    before, after = srv.new_call  # type: ignore[attr-defined]
    return {"entry": ENTRY, "stat": "mean", "baseline_from": before[0].start_unix_nano // MS,
            "baseline_to": before[-1].start_unix_nano // MS + 1, "from": after[0].start_unix_nano // MS,
            "to": after[-1].start_unix_nano // MS + 1}


def test_a_new_call_is_an_edge_player_in_rest_grpc_and_the_data_source(live):
    srv, _, _ = live
    query = _new_call_query(srv)
    status, r = srv.get("/api/v1/regression?" + urlencode(query))
    assert status == 200, r
    top = r["contributions"][0]
    assert top["player"] == "edge" and top["change_kind"] == "new" and "→" in top["node"]
    edges = [c for c in r["contributions"] if c["player"] == "edge"]
    assert any(c["edge"]["callee_service"] == "fraud" for c in edges)
    assert all(c["service"] == "payments" for c in edges), json.dumps(r["contributions"], indent=1)  # the caller's code makes the new call
    assert r["services"][0]["service"] == "payments"
    # independent truth: the new call adds fraud's own time plus its call gap to every request (means of the
    # traffic generator: 6 ms + 2 x 0.5 ms); the observed change of the mean is measured from the sent traces
    before, after = srv.new_call  # type: ignore[attr-defined]
    observed = sum(s.latency_ms for s in after) / NEW_CALL - sum(s.latency_ms for s in before) / NEW_CALL
    assert r["observed_change"] == pytest.approx(observed, abs=0.01)
    assert sum(c["contribution"] for c in edges) == pytest.approx(observed, abs=2.0)
    assert sum(c["contribution"] for c in r["contributions"]) == pytest.approx(r["modelled_change"], abs=1e-6)
    meta = [("authorization", f"Bearer {TOKEN}")]
    with grpc.insecure_channel(srv.grpc_target) as channel:
        g = pb_grpc.WhySlowStub(channel).GetRegression(pb.GetRegressionRequest(
            entry=ENTRY, stat="mean", baseline_from_unix_ms=query["baseline_from"],
            baseline_to_unix_ms=query["baseline_to"], from_unix_ms=query["from"], to_unix_ms=query["to"]),
            metadata=meta, timeout=60)
    assert g.contributions[0].player == "edge" and g.contributions[0].node == top["node"]
    assert list(g.contributions[0].edge.callers) == top["edge"]["callers"]
    assert g.contributions[0].contribution == pytest.approx(top["contribution"], abs=1e-9)
    body = {"range": {"from": _iso(query["from"] * MS), "to": _iso(query["to"] * MS)},
            "targets": [{"refId": "A", "target": "regression",
                         "payload": {k: query[k] for k in ("entry", "stat", "baseline_from", "baseline_to")}}]}
    status, frames = srv.post("/query", body)
    assert status == 200
    rows = frames[1]
    table = [dict(zip([c["text"] for c in rows["columns"]], x, strict=True)) for x in rows["rows"]]
    assert table[0]["player"] == "edge" and table[0]["node"] == top["node"]


@pytest.mark.parametrize("query, status, message", [
    ({"entry": ENTRY, "stat": "p101"}, 400, "between 0 and 1"),
    ({"entry": ENTRY, "stat": "tail>abc"}, 400, "unknown stat"),
    ({"entry": "nope"}, 404, "unknown entry point"),
    ({"entry": ENTRY, "from": "2020-01-01T00:00:00Z", "to": "2020-01-01T00:15:00Z"}, 400, "holds 0 complete traces"),
    ({"entry": ENTRY, "from": "now-1m", "to": "now-2m"}, 400, "from must not be after to"),
    ({"entry": ENTRY, "intervals": 1}, 400, "intervals"),
])
def test_bad_queries_are_clear_errors(live, query, status, message):
    srv, _, _ = live
    got, body = srv.get("/api/v1/regression?" + urlencode(query))
    assert got == status and message in body["error"], body


def test_bad_what_if_bodies(live):
    srv, _, _ = live
    for body, message in (({"entry": ENTRY}, "interventions must be"),
                          ({"entry": ENTRY, "interventions": {"cart": True}}, "must be a factor"),
                          ({"entry": ENTRY, "interventions": {"cart": -2}}, "factor"),
                          ({"entry": ENTRY, "interventions": {"nope": 0.5}}, "neither a node nor a service")):
        status, answer = srv.post("/api/v1/whatif", body)
        assert status == 400 and message in answer["error"], (body, answer)
    assert srv.post("/api/v1/whatif", {"interventions": {"cart": 0.5}}, auth=False)[0] == 401


def test_answers_are_stored_and_listed_after_a_restart(live):
    """Last in this module: it restarts the server over the same data directory."""
    srv, _, _ = live
    query = _new_call_query(srv)
    answer = srv.get("/api/v1/regression?" + urlencode({**query, "intervals": 0}))[1]
    status, listed = srv.get("/api/v1/regressions?" + urlencode({"entry": ENTRY, "source": "query"}))
    assert status == 200 and listed["regressions"], listed
    srv.stop()
    srv.start()
    status, after = srv.get("/api/v1/regressions?" + urlencode({"entry": ENTRY, "source": "query",
                                                                 "from": query["from"], "to": query["to"]}))
    assert status == 200
    rows = [r for r in after["regressions"] if r["from_ms"] == query["from"] and r["to_ms"] == query["to"]]
    assert rows and rows[0]["top_service"] == "payments" and rows[0]["summary"] == answer["summary"]
    assert rows[0]["regression"]["contributions"] == answer["contributions"]
    assert len(after["regressions"]) < len(listed["regressions"])  # the window filter left the other answers out
    assert srv.get("/api/v1/regressions?source=nope")[0] == 400
