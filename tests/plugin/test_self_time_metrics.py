"""Self-time metrics: own-time and call-gap histograms per span type in /metrics, top N per entry point.

Hand-built batches check the counting against a plain per-value computation (buckets, sums, the "other" series,
incomplete traces left out, call gaps apart); the live shop server (real OTLP from the OTel SDK) checks that the
slowed services' own time shows in the right buckets and that the dashboard's "self time by service" queries name
metrics and labels the server exposes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector_processor.batch_analysis import AnalysedBatch
from plugin.config import ConfigError, build_config
from plugin.demo.shop_traffic import ENTRY
from plugin.metrics import OTHER, SELF_TIME_BUCKETS, SelfTimeCollector

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "whyslow-rca.json"


def _batch(traces: list[tuple[str, bool, dict[str, tuple[float, float]]]],
           info: dict[str, tuple[str, str, str]]) -> AnalysedBatch:
    """traces: (entry, complete, {node: (own ms, gap ms)})."""
    nodes = sorted({n for _, _, feats in traces for n in feats})
    f_trace, f_node, values = [], [], []
    for k, (_, _, feats) in enumerate(traces):
        for n, (own, gap) in sorted(feats.items()):
            f_trace.append(k)
            f_node.append(nodes.index(n))
            values.append([own + 1.0, own, gap, 1, 0, 0.0])
    t = len(traces)
    return AnalysedBatch(
        trace_ids=[f"{k:032x}" for k in range(t)], entries=[e for e, _, _ in traces],
        start=np.zeros(t, dtype=np.int64), duration_ms=np.ones(t), complete=np.array([c for _, c, _ in traces]),
        n_spans=np.ones(t, dtype=np.int64), f_trace=np.array(f_trace, dtype=np.int64),
        f_node_idx=np.array(f_node, dtype=np.int64), nodes=nodes, values=np.array(values, dtype=float),
        node_info=info)


def _scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value of every sample."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _series(samples: dict, metric: str, **labels: str) -> dict[str, float]:
    """le -> cumulative count of one histogram series, plus '_sum' and '_count'."""
    want = set(labels.items())
    out = {}
    for (name, lbl), value in samples.items():
        d = dict(lbl)
        if not name.startswith(metric) or not want <= set(lbl) or len(set(d) - {"le"}) != len(want):
            continue
        out[d["le"] if name.endswith("_bucket") else name[len(metric):]] = value
    return out


INFO = {
    "a:root": ("a", "root", "span"), "b:work": ("b", "work", "span"), "c:work": ("c", "work", "span"),
    "d:work": ("d", "work", "span"), "net:b:work": ("b", "work", "call_gap"), "db:q": ("db", "q", "db"),
}


def test_histograms_match_a_plain_count_with_top_n_and_other() -> None:
    rng = np.random.default_rng(3)
    traces = []
    for k in range(300):
        feats = {"a:root": (rng.exponential(2.0), 0.0), "b:work": (rng.exponential(40.0), 0.0),
                 "net:b:work": (rng.exponential(1.5), rng.exponential(1.5)), "db:q": (rng.exponential(8.0), 0.0)}
        if k % 3 == 0:
            feats["c:work"] = (rng.exponential(0.3), 0.0)
            feats["d:work"] = (rng.exponential(0.2), 0.0)
        traces.append(("a:root", k % 50 != 7, feats))
    traces.append(("x:other-entry", True, {"d:work": (5.0, 0.0)}))
    collector = SelfTimeCollector(top_n=4)
    for lo in range(0, len(traces), 64):  # several batches, as the pipeline delivers them
        collector.observe_batch(_batch(traces[lo:lo + 64], INFO))
    registry = CollectorRegistry()
    registry.register(collector)
    samples = _scrape(generate_latest(registry).decode())

    complete = [t for t in traces if t[1]]
    # 4 slots for entry a:root: taken by the span types with the largest own time of the first batch
    first = [t for t in traces[:64] if t[1]]
    totals = {n: sum(f[n][0] if INFO[n][2] != "call_gap" else f[n][1] for _, _, f in first if n in f) for n in INFO}
    slots = sorted((n for n in totals if any(n in f for _, _, f in first)), key=lambda n: -totals[n])[:4]
    assert "c:work" not in slots or "d:work" not in slots  # the test needs at least one span type in "other"
    expected: dict[tuple[str, str, str, str], list[float]] = {}
    for entry, _, feats in complete:
        for n, (own, gap) in feats.items():
            metric = "whyslow_call_gap_seconds" if INFO[n][2] == "call_gap" else "whyslow_span_self_seconds"
            svc, node = (INFO[n][0], n) if (entry != "a:root" or n in slots) else (OTHER, OTHER)
            expected.setdefault((metric, entry, svc, node), []).append((gap if metric.startswith("whyslow_call")
                                                                        else own) / 1000)
    assert ("whyslow_span_self_seconds", "a:root", OTHER, OTHER) in expected
    for (metric, entry, svc, node), values in expected.items():
        got = _series(samples, metric, entry=entry, service=svc, span_type=node)
        assert got["_count"] == len(values)
        assert got["_sum"] == pytest.approx(sum(values), rel=1e-9)
        for bound in SELF_TIME_BUCKETS:
            assert got[f"{bound:g}"] == sum(v <= bound for v in values), (metric, node, bound)
        assert got["+Inf"] == len(values)
    series = {(d["entry"], d["span_type"]) for (name, lbl) in samples if name.endswith("_count")
              for d in [dict(lbl)] if "span_type" in d}
    assert len({s for s in series if s[0] == "a:root"}) <= 4 + 1  # top N plus "other"


def test_nothing_from_incomplete_empty_or_nan_rows() -> None:
    collector = SelfTimeCollector(top_n=3)
    collector.observe_batch(_batch([("a:root", False, {"a:root": (3.0, 0.0)})], INFO))
    collector.observe_batch(_batch([], INFO))
    collector.observe_batch(_batch([("a:root", True, {"a:root": (float("nan"), 0.0)})], INFO))
    registry = CollectorRegistry()
    registry.register(collector)
    assert "whyslow_span_self_seconds_count" not in generate_latest(registry).decode()
    collector.observe_batch(_batch([("a:root", True, {"a:root": (3.0, 0.0), "b:work": (float("nan"), 0.0)})], INFO))
    own = _series(_scrape(generate_latest(registry).decode()), "whyslow_span_self_seconds", entry="a:root",
                  service="a", span_type="a:root")
    assert own["_count"] == 1 and own["_sum"] == pytest.approx(0.003)


def test_top_n_is_a_setting_like_the_others(tmp_path: Path) -> None:
    assert build_config({}, env={}).self_time_top_n == 20
    assert build_config({"self_time_top_n": "5"}, env={}).self_time_top_n == 5
    assert build_config({}, env={"WHYSLOW_SELF_TIME_TOP_N": "7"}).self_time_top_n == 7
    (tmp_path / "c.yaml").write_text("self-time-top-n: 9\n")
    assert build_config({}, env={}, config_file=str(tmp_path / "c.yaml")).self_time_top_n == 9
    for bad in ("0", "1001", "x"):
        with pytest.raises(ConfigError, match="self_time_top_n"):
            build_config({"self_time_top_n": bad}, env={})


def test_live_server_exposes_the_shops_self_time(shop: Any) -> None:
    status, text = shop.srv.get("/metrics")
    assert status == 200
    samples = _scrape(text)
    checkout = len(shop.normal) + sum(len(v) for v in shop.slow.values())
    for service, node in (("payments", "payments:POST /pay"), ("cart", "cart:GET /cart")):
        own = _series(samples, "whyslow_span_self_seconds", entry=ENTRY, service=service, span_type=node)
        assert own["_count"] == checkout, own
        # the traces sent with this service 400 ms slower, and only those, spent over 250 ms in it
        assert own["_count"] - own["0.25"] == len(shop.slow[service])
        assert own["_sum"] >= len(shop.slow[service]) * 0.25
        gap = _series(samples, "whyslow_call_gap_seconds", entry=ENTRY, service=service,
                      span_type=f"net:{node}")
        assert gap["_count"] == checkout and gap["_sum"] < own["_sum"]
    db = _series(samples, "whyslow_span_self_seconds", entry=ENTRY, service="postgresql",
                 span_type="postgresql:SELECT orders")
    assert db["_count"] == checkout


def test_dashboard_self_time_panel_queries_what_the_server_exposes(shop: Any) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (panel,) = [p for p in dashboard["panels"] if p["title"].lower().startswith("self time by service")]
    assert panel["type"] == "timeseries" and panel["datasource"]["type"] == "prometheus"
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"
    _, text = shop.srv.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for target in panel["targets"]:
        expr = target["expr"]
        names = set(re.findall(r"(whyslow_[a-z_]+?)(?:_sum|_count|_bucket)\b", expr))
        assert names and names <= set(families), (expr, sorted(families))
        for by in re.findall(r"by \(([^)]*)\)", expr):
            labels = {x.strip() for x in by.split(",")} - {"le"}
            for name in names:
                assert labels <= set(families[name].samples[0].labels), (expr, labels)
