"""Traces that arrive while an entry point is still learning are scored once its first model is fitted:
slow ones among them are found, the model is refitted without them, and they are explained; GET
/api/v1/status says when everything is scored and explained (`detector.pending == 0`)."""

from __future__ import annotations

import json
import time
import urllib.request

from plugin.config import ServeConfig
from plugin.demo.shop_traffic import ENTRY, ShopTraffic
from plugin.server import WhySlowServer
from tests.support.serve import wait_until

SLOW_MS = 400.0


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_learning_backlog_is_scored_and_explained(tmp_path):
    config = ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                         http="127.0.0.1:0", grpc="127.0.0.1:0", min_traces=60, window=1000,
                         refit_interval_s=3600, early_refit=False, trace_timeout_s=0.3).validate()
    with WhySlowServer(config) as server:
        base = server.url("http")
        traffic = ShopTraffic(f"127.0.0.1:{server.ports['otlp_grpc']}", seed=5)
        try:
            # every trace below is stored before the first model exists: the slow ones are in its training
            # window, spread among the normal ones (as a fault during learning would be)
            start = time.time_ns() - 10 * 1_000_000_000
            normal = traffic.send(30, start=start)
            slow = traffic.send(3, slow="payments", slow_ms=SLOW_MS, start=start + 2_000_000_000,
                                spacing_ms=200)
            normal += traffic.send(27, start=start + 3_000_000_000)
        finally:
            traffic.close()
        sent = {s.trace_id for s in normal + slow}

        def settled() -> dict | None:
            st = _get(base + "/api/v1/status")
            d = st["detector"]
            ready = any(m["entry"] == ENTRY and m["state"] == "ready" for m in st["models"])
            return st if ready and d["pending"] == 0 and d["backlog_scored"] >= len(sent) else None

        st = wait_until(settled)
        d = st["detector"]
        assert d["traces"] == len(sent) and d["unscored_learning"] == len(sent)
        assert d["backlog_scored"] == len(sent) and d["scored"] == len(sent) and d["score_errors"] == 0
        model = next(m for m in st["models"] if m["entry"] == ENTRY)
        # refitted once without the learning outliers: the serving model never saw the slow traces
        assert model["fits"] == 2 and model["rows"] <= len(sent) - len(slow)

        outliers = {o["trace_id"]: o for o in _get(base + "/api/v1/outliers?limit=100")["outliers"]}
        assert {s.trace_id for s in slow} <= set(outliers)
        assert len(outliers) == d["outliers"] == d["explained"]
        assert len(set(outliers) - {s.trace_id for s in slow}) <= 1  # normal traffic: at most a stray one
        for s in slow:
            rca = _get(base + f"/api/v1/traces/{s.trace_id}/rca")
            assert rca["is_outlier"] and rca["entry"] == ENTRY
            assert abs(rca["target_latency_ms"] - s.latency_ms) < 0.01
            assert rca["outlier_score"] >= config.threshold
            top = rca["contributions"][0]
            assert top["node"] == "payments:POST /pay", [(c["node"], c["contribution"]) for c in rca["contributions"]]
            total = sum(c["contribution"] for c in rca["contributions"])
            assert abs(total - rca["outlier_score"]) <= 0.05 * rca["outlier_score"] + 0.2  # Shapley efficiency
            # had payments behaved normally, the request would have been about SLOW_MS faster
            assert top["counterfactual_latency_ms"] < s.latency_ms - 0.7 * SLOW_MS


def test_status_pending_counts_queued_work(tmp_path):
    """pending is 0 on an idle server, and returns to 0 once traces sent after the fit are scored and
    their outliers explained (what `whyslow demo` waits for)."""
    config = ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                         http="127.0.0.1:0", grpc="127.0.0.1:0", min_traces=40, window=1000,
                         refit_interval_s=3600, early_refit=False, trace_timeout_s=0.3).validate()
    with WhySlowServer(config) as server:
        base = server.url("http")
        assert _get(base + "/api/v1/status")["detector"]["pending"] == 0
        traffic = ShopTraffic(f"127.0.0.1:{server.ports['otlp_grpc']}", seed=9)
        try:
            traffic.send(40)
            wait_until(lambda: any(m["state"] == "ready" for m in _get(base + "/api/v1/status")["models"]))
            slow = traffic.send(2, slow="cart", slow_ms=SLOW_MS)
        finally:
            traffic.close()

        def settled() -> dict | None:
            st = _get(base + "/api/v1/status")
            return st if st["detector"]["pending"] == 0 and st["detector"]["traces"] == 42 else None

        d = wait_until(settled)["detector"]
        assert d["scored"] == 42 and d["explained"] == d["outliers"] >= 2
        outliers = {o["trace_id"] for o in _get(base + "/api/v1/outliers?limit=100")["outliers"]}
        assert {s.trace_id for s in slow} <= outliers
        for s in slow:
            assert _get(base + f"/api/v1/traces/{s.trace_id}/rca")["contributions"][0]["service"] == "cart"


def test_learning_backlog_survives_a_restart(tmp_path):
    """Traces stored by a server that stopped before its first fit are part of the backlog after a restart."""

    def config() -> ServeConfig:
        return ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                           http="127.0.0.1:0", grpc="127.0.0.1:0", min_traces=60, window=1000,
                           refit_interval_s=3600, early_refit=False, trace_timeout_s=0.3).validate()

    start = time.time_ns() - 20 * 1_000_000_000
    with WhySlowServer(config()) as server:
        base = server.url("http")
        traffic = ShopTraffic(f"127.0.0.1:{server.ports['otlp_grpc']}", seed=13)
        try:
            before = traffic.send(25, start=start)
            slow = traffic.send(3, slow="payments", slow_ms=SLOW_MS, start=start + 2_000_000_000, spacing_ms=200)
        finally:
            traffic.close()
        wait_until(lambda: (lambda d: d["traces"] == 28 and d["pending"] == 0)(_get(base + "/api/v1/status")["detector"]))
        assert _get(base + "/api/v1/outliers")["outliers"] == []  # still learning: nothing scored
    with WhySlowServer(config()) as server:
        base = server.url("http")
        traffic = ShopTraffic(f"127.0.0.1:{server.ports['otlp_grpc']}", seed=14)
        try:
            after = traffic.send(35, start=start + 5_000_000_000)
        finally:
            traffic.close()

        def settled() -> dict | None:
            st = _get(base + "/api/v1/status")
            ready = any(m["entry"] == ENTRY and m["state"] == "ready" for m in st["models"])
            d = st["detector"]
            return st if ready and d["pending"] == 0 and d["traces"] == len(after) else None

        d = wait_until(settled)["detector"]
        # the 28 traces stored before the restart were scored with the ones that arrived after it
        assert d["backlog_scored"] >= len(before) + len(slow)
        outliers = {o["trace_id"] for o in _get(base + "/api/v1/outliers?limit=100")["outliers"]}
        assert {s.trace_id for s in slow} <= outliers
        for s in slow:
            assert _get(base + f"/api/v1/traces/{s.trace_id}/rca")["contributions"][0]["service"] == "payments"
