"""A detected regression (plugin.watch) travels like an explained outlier: gRPC WatchOutliers message and Grafana
annotation from the same payload."""

from __future__ import annotations

import numpy as np
import pandas as pd

from plugin.annotations import annotation_body
from plugin.grpc_api import explanation_message
from plugin.incident_ranking import MINUTE_NS, rank_window
from plugin.watch import ALERT_SCORE, regression_payload
from tests.support.shift_traffic import ENTRY, periods, traffic


def detected() -> dict:
    rng = np.random.default_rng(11)
    lo = 200_000 * MINUTE_NS
    base = pd.concat([traffic(60, rng, start_ns=lo + m * MINUTE_NS) for m in range(-60, 0)])
    win = traffic(600, rng, slow="pay:POST /pay", factor=2.0, fraction=1.0, start_ns=lo, spacing_ns=MINUTE_NS // 120)
    ranking = rank_window([], periods(base, win, lo), min_score=ALERT_SCORE, attribution=False)
    assert ranking["shift"]["changed"]
    return regression_payload(ENTRY, ranking, lo, lo + 5 * MINUTE_NS, ALERT_SCORE)


def test_a_sustained_slowdown_becomes_a_regression_payload():
    p = detected()
    assert p["kind"] == "regression" and p["lead_service"] == "pay" and p["entry"] == ENTRY
    assert p["contributions"][0]["node"] == "pay:POST /pay" and p["outlier_score"] >= ALERT_SCORE
    assert p["rarer_than"] == np.exp(min(p["outlier_score"], 700.0))  # finite for JSON and protobuf
    assert p["to_ms"] - p["time_ms"] == 5 * 60_000
    assert sum(c["share"] for c in p["contributions"]) <= 1.0 + 1e-9
    assert p["summary"].startswith(f"Regression of {ENTRY}: pay (shift score")


def test_it_streams_and_annotates_like_an_outlier():
    p = detected()
    msg = explanation_message(p)
    assert msg.trace_id == p["trace_id"] and msg.entry == ENTRY and msg.is_outlier
    assert msg.outlier_score == p["outlier_score"] and msg.contributions[0].service == "pay"
    body = annotation_body(p, None, None)
    assert "regression" in body["tags"] and "root-cause:pay" in body["tags"]
    assert body["time"] == p["time_ms"] and body["timeEnd"] == p["to_ms"]
