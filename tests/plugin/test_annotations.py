"""Grafana annotation pusher against a local stand-in of POST /api/annotations: request shape, retries with
backoff, bounded non-blocking queue, the token never in logs."""

from __future__ import annotations

import logging
import socket
import time

from plugin.annotations import AnnotationPusher, annotation_body
from tests.support.backend import GrafanaStandIn

TOKEN = "glsa_unitTestToken_91c"


def payload(trace_id: str = "ab" * 16) -> dict:
    return {
        "trace_id": trace_id, "entry": "frontend:GET /checkout", "time_ms": 1_790_000_000_123,
        "target_latency_ms": 450.0, "outlier_score": 12.0, "rarer_than": 162754.8,
        "contributions": [
            {"node": "payments:POST /pay", "service": "payments", "operation": "POST /pay",
             "contribution": 9.0, "share": 0.75},
            {"node": "postgresql:SELECT orders", "service": "postgresql", "operation": "SELECT orders",
             "contribution": 2.5, "share": 2.5 / 12},
            {"node": "cart:GET /cart", "service": "cart", "operation": "GET /cart", "contribution": -0.5,
             "share": -0.5 / 12},
        ],
    }


def test_body_shape():
    body = annotation_body(payload(), "whyslow-rca", 3)
    GrafanaStandIn.validate(body)
    assert body["time"] == 1_790_000_000_123 and body["timeEnd"] == 1_790_000_000_573
    assert body["tags"][:2] == ["whyslow", "root-cause:payments"]
    assert body["dashboardUID"] == "whyslow-rca" and body["panelId"] == 3
    assert "payments POST /pay 9.00 nats (75%)" in body["text"] and "cart" not in body["text"].split(":", 2)[-1]
    body = annotation_body(payload(), None, None)
    assert "dashboardUID" not in body and "panelId" not in body


def test_text_names_call_gaps_and_keeps_huge_rarities_short():
    """A call gap and its callee's span used to read the same ('payments POST /pay' twice); a score of 130 nats
    printed a 57-digit '1 in …'."""
    p = payload()
    p["contributions"][1] = {"node": "net:payments:POST /pay", "service": "payments", "operation": "POST /pay",
                             "kind": "call_gap", "contribution": 2.5, "share": 2.5 / 12}
    p["outlier_score"], p["rarer_than"] = 130.0, 2.87e56
    text = annotation_body(p, None, None)["text"]
    assert "payments POST /pay 9.00 nats (75%); network to payments POST /pay 2.50 nats (21%)" in text
    assert "rarer than 1 in 2.9e+56)" in text
    assert "rarer than 1 in 162,755)" in annotation_body(payload(), None, None)["text"]


def test_retries_then_sends_and_never_logs_the_token(caplog):
    grafana = GrafanaStandIn(TOKEN, fail_first=2)
    pusher = AnnotationPusher(grafana.url, TOKEN, "whyslow-rca", 1, backoff_s=0.05)
    caplog.set_level(logging.DEBUG)
    try:
        pusher.start()
        assert pusher.submit(payload())
        deadline = time.monotonic() + 10
        while not grafana.received and time.monotonic() < deadline:
            time.sleep(0.02)
        pusher.stop()
    finally:
        grafana.close()
    assert grafana.problems == [] and len(grafana.received) == 1 and grafana.attempts == 3
    assert pusher.counts == {"sent": 1, "failed": 0, "dropped": 0, "retried": 2, "suppressed": 0}
    assert "retrying" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in repr(pusher)


def test_unreachable_grafana_gives_up_without_blocking(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    pusher = AnnotationPusher(f"http://127.0.0.1:{port}", TOKEN, retries=2, backoff_s=0.01, queue_size=2)
    pusher.start()
    t0 = time.monotonic()
    accepted = [pusher.submit(payload(f"{i:032x}")) for i in range(1, 50)]
    assert time.monotonic() - t0 < 0.5  # submit never blocks
    assert accepted.count(False) >= 40 and pusher.counts["dropped"] == accepted.count(False)
    pusher.stop(timeout=5)
    assert pusher.counts["failed"] >= 1 and pusher.counts["sent"] == 0
    assert TOKEN not in caplog.text


def test_client_errors_are_not_retried():
    grafana = GrafanaStandIn("another-token")
    pusher = AnnotationPusher(grafana.url, TOKEN, backoff_s=0.01)
    try:
        pusher.start()
        pusher.submit(payload())
        deadline = time.monotonic() + 5
        while pusher.counts["failed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        pusher.stop()
    finally:
        grafana.close()
    assert grafana.attempts == 1 and pusher.counts["failed"] == 1 and pusher.counts["retried"] == 0


def test_one_annotation_per_cause_per_interval():
    """An incident (many slow requests, same cause) makes one annotation per entry point and root cause."""
    grafana = GrafanaStandIn(TOKEN)
    pusher = AnnotationPusher(grafana.url, TOKEN, min_interval_s=60)
    other = payload("cd" * 16)
    other["contributions"] = list(reversed(other["contributions"]))  # cart first
    other["contributions"][0]["contribution"] = 20.0
    try:
        pusher.start()
        results = [pusher.submit(payload(f"{i:032x}")) for i in range(1, 11)] + [pusher.submit(other)]
        pusher.stop()
    finally:
        grafana.close()
    assert results == [True] + [False] * 9 + [True]
    assert pusher.counts["suppressed"] == 9 and pusher.counts["sent"] == 2
    assert sorted(b["tags"][1] for b in grafana.received) == ["root-cause:cart", "root-cause:payments"]
