"""Fault names on the command line, and the terminal explanation."""

from __future__ import annotations

import pytest

from plugin.demo.faults import FaultError, available_faults, resolve_fault
from plugin.demo.report import answer, node_label, render_explanation, seconds, top_cause
from plugin.demo.site import retail_site

SITE = retail_site()
NAMES = {s.name: s.display for s in SITE.services.values()}


@pytest.mark.parametrize(("name", "kind", "service"), [
    ("caching-service", "slow service", "caching-service"),
    ("Caching Service", "slow service", "caching-service"),
    ("CACHING_SERVICE", "slow service", "caching-service"),
    ("product-db", "slow database", "product-db"),
    ("Order DB", "slow database", "order-db"),
    ("net:shipping-cost", "network delay", "shipping-cost"),
    ("NET:Shipping Cost Service", "network delay", "shipping-cost"),
    ("website", "slow service", "website"),
])
def test_resolve_fault(name, kind, service):
    fault = resolve_fault(SITE, name, 1.5)
    assert (fault.kind, fault.service, fault.delay_s) == (kind, service, 1.5)
    assert fault.describe(SITE)


def test_fault_catalogue_covers_every_service_and_every_call():
    faults = available_faults(SITE)
    assert {f.service for f in faults if not f.is_network} == set(SITE.services)
    network = {f.service for f in faults if f.is_network}
    assert network == {s.name for s in SITE.services.values() if not s.is_db and s.name != SITE.entry}
    assert len({f.name for f in faults}) == len(faults)
    text = resolve_fault(SITE, "net:caching-service").describe(SITE)
    assert "Product Catalogue" in text and "Caching Service" in text


@pytest.mark.parametrize(("name", "delay", "message"), [
    ("payment-service", 2.0, "unknown fault 'payment-service'; choose one of: website"),
    ("net:product-db", 2.0, "unknown fault"),  # databases have no network fault of their own
    ("net:website", 2.0, "unknown fault"),  # nothing calls the entry point
    ("caching-service", 0.0, "positive"),
    ("caching-service", float("nan"), "positive"),
    ("caching-service", 1e9, "below 3600"),
])
def test_bad_fault(name, delay, message):
    with pytest.raises(FaultError, match=message.replace("(", r"\(")):
        resolve_fault(SITE, name, delay)


def _payload():
    def row(rank, node, service, kind, contribution, share, cf):
        return {"rank": rank, "node": node, "service": service, "operation": node.split(":")[-1], "kind": kind,
                "contribution": contribution, "share": share, "counterfactual_latency_ms": cf}

    return {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "entry": "website:GET /product/{id}",
        "target_latency_ms": 5600.0, "outlier_score": 10.0, "rarer_than": 22026.5,
        "contributions": [
            row(1, "caching-service:GET /cache/product", "caching-service", "span", 8.0, 0.8, 900.0),
            row(2, "net:shipping-cost:GET /shipping/quote", "shipping-cost", "call_gap", 2.5, 0.25, 5100.0),
            row(3, "product-db:SELECT products", "product-db", "db", 0.5, 0.05, 5500.0),
            row(4, "order-service:GET /orders/recent", "order-service", "span", -1.0, -0.1, 5650.0),
        ],
    }


def test_render_explanation_ranks_bars_and_counterfactuals():
    text = render_explanation(_payload(), NAMES)
    lines = text.splitlines()
    assert lines[0].startswith("Trace 4bf92f3577b34da6a3ce929d0e0e4736: Website (GET /product/{id}) took 5.60 s")
    assert "IT outlier score 10.0 nats, rarer than 1 in 22,026" in lines[0]
    assert lines[1].startswith("  1. Caching Service (GET /cache/product)")
    assert "8.00 nats    80%" in lines[1]
    assert lines[2].strip() == "Website would have taken 0.90 s instead of 5.60 s had Caching Service been normal"
    assert lines[3].startswith("  2. network → Shipping Cost Service")
    assert "had the network into Shipping Cost Service been normal" in lines[4]
    assert lines[5].startswith("  3. Product DB (SELECT products)")
    assert lines[6].strip() == "Website would have taken 5.50 s instead of 5.60 s had Product DB been normal"
    assert "Order Service" not in text  # negative contributions are not root causes
    # bars are proportional to the contributions: 28, 9 and 2 blocks
    assert [line.count("█") for line in (lines[1], lines[3], lines[5])] == [28, 9, 2]


def test_counterfactual_lines_only_where_the_latency_changes():
    payload = _payload()
    payload["contributions"][2]["counterfactual_latency_ms"] = 5590.0  # 10 ms of 5.6 s: not worth a line
    lines = render_explanation(payload, NAMES).splitlines()
    assert lines[5].startswith("  3. Product DB") and len(lines) == 6


def test_render_without_positive_contribution_and_odd_shares():
    payload = _payload()
    for c in payload["contributions"]:
        c["contribution"] = -abs(c["contribution"])
    assert "no service contributed positively" in render_explanation(payload, NAMES)
    assert top_cause(payload) is None
    payload = _payload()
    payload["contributions"][0]["share"] = 13.5  # more than the score: negative contributions offset it
    text = render_explanation(payload, NAMES)
    assert "1350%" in text.splitlines()[1]
    assert text.splitlines()[-1].strip() == ("(shares are of the outlier score; the other nodes' negative "
                                             "contributions, -1.00 nats together, offset part of it)")


def test_helpers():
    assert top_cause(_payload())["service"] == "caching-service"
    assert seconds(5600.0) == "5.60 s" and seconds(42.0) == "42 ms" and seconds(None) == "?"
    assert node_label({"service": "unknown-svc", "kind": "span", "operation": "op"}, NAMES) == "unknown-svc (op)"


def test_answer_names_the_kind_of_cause():
    payload = _payload()
    assert answer(payload, NAMES) == ("Answer: a malfunctioning service, Caching Service (its own work), "
                                      "not a slow database.")
    payload["contributions"][2]["contribution"] = 9.0  # Product DB on top
    assert answer(payload, NAMES) == "Answer: a slow database in the back end, Product DB, not a malfunctioning service."
    payload["contributions"][1]["contribution"] = 10.0  # the network into Shipping Cost Service on top
    assert answer(payload, NAMES).endswith("the network on the calls into Shipping Cost Service.")
    for c in payload["contributions"]:
        c["contribution"] = -1.0
    assert answer(payload, NAMES).startswith("Nothing stands out")
