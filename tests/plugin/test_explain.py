"""plugin.explain: an engine explanation shaped into the payload every API serves, and its human summary."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import rca_engine
from collector_processor.records import NodeFeatures, TraceFeatures
from plugin.explain import (
    PAYLOAD_VERSION,
    build_payload,
    contributor_label,
    rarer_text,
    rarer_than,
    summary_text,
    top_contributors,
    trace_row,
)
from plugin.models import SCORE_BASE, FittedModel, NodeMeta

ENTRY, DB, GAP, AUTH = "web:GET /cart", "db:SELECT", "web->db:SELECT", "auth:check"
EDGES = [(DB, GAP), (GAP, ENTRY), (AUTH, ENTRY)]  # cause -> effect
META = {ENTRY: NodeMeta("web", "GET /cart", "span"), DB: NodeMeta("db", "SELECT", "db"),
        GAP: NodeMeta("db", "SELECT", "call_gap")}  # AUTH deliberately without metadata


@pytest.fixture(scope="module")
def fitted() -> FittedModel:
    rng = np.random.default_rng(0)
    n = 400
    db, auth = rng.exponential(5.0, n), rng.exponential(2.0, n)
    gap = db + rng.exponential(0.5, n)
    data = pd.DataFrame({DB: db, AUTH: auth, GAP: gap, ENTRY: gap + auth + rng.exponential(1.0, n)})
    model = rca_engine.fit(nx.DiGraph(EDGES), data, "sum", seed=1)
    return FittedModel(entry=ENTRY, model=model, nodes=META, causal_edges=EDGES,
                       mechanisms={k: str(v) for k, v in model.mechanism_names().items()}, columns=list(data.columns),
                       rows=n, fitted_at=1_700_000_000.5, fit_seconds=0.2)


def trace(latency: dict[str, float], own: dict[str, float], duration_ms: float = 99.0) -> TraceFeatures:
    nodes = {n: NodeFeatures(latency_ms=v, own_ms=own[n], gap_ms=0.0, count=1, error=False, start_offset_ms=0.0)
             for n, v in latency.items()}
    return TraceFeatures("ab" * 16, ENTRY, 1_700_000_123_456_789_000, duration_ms, True, 4, nodes)


def slow_db_trace() -> tuple[TraceFeatures, dict[str, float], dict[str, float]]:
    latency = {DB: 60.0, AUTH: 2.0, GAP: 60.5, ENTRY: 63.5}
    own = {DB: 60.0, AUTH: 2.0, GAP: 0.5, ENTRY: 1.0}
    tf = trace(latency, own)
    return tf, *trace_row(tf)


def test_trace_row_reads_latency_and_own_time_per_node() -> None:
    tf, latency, own = slow_db_trace()
    assert latency == {n: f.latency_ms for n, f in tf.nodes.items()} == tf.row()
    assert own == {n: f.own_ms for n, f in tf.nodes.items()}


def test_payload_ranks_the_engines_contributions_and_keeps_its_numbers(fitted: FittedModel) -> None:
    tf, latency, own = slow_db_trace()
    expl = rca_engine.attribute(fitted.model, ENTRY, latency, base=SCORE_BASE, seed=0)
    p = build_payload(tf.trace_id, tf, fitted, expl, latency, own, 0, 0.25, threshold=math.log(1000))
    assert p["version"] == PAYLOAD_VERSION and p["trace_id"] == tf.trace_id and p["entry"] == ENTRY
    assert p["outlier_score"] == pytest.approx(expl.outlier_score)
    assert p["rarer_than"] == pytest.approx(math.exp(expl.outlier_score))
    assert p["is_outlier"] == (expl.outlier_score >= math.log(1000)) and p["threshold"] == math.log(1000)
    assert p["time_ms"] == 1_700_000_123_456 and p["start_unix_nano"] == tf.start_unix_nano
    assert p["target_latency_ms"] == 63.5 and p["model_traces"] == 400 and p["model_fitted_at"] == fitted.fitted_at
    rows = p["contributions"]
    assert [r["rank"] for r in rows] == list(range(1, 5))
    assert [r["node"] for r in rows] == sorted(expl.contributions, key=lambda k: -expl.contributions[k])
    assert rows[0]["node"] == DB  # the slow database is the root cause
    for r in rows:
        assert r["contribution"] == pytest.approx(expl.contributions[r["node"]])
        assert r["share"] == pytest.approx(expl.contributions[r["node"]] / expl.outlier_score)
        assert r["node_latency_ms"] == latency[r["node"]] and r["own_latency_ms"] == own[r["node"]]
        assert r["counterfactual_latency_ms"] == pytest.approx(expl.counterfactuals[r["node"]])
        assert r["contribution_lo"] is None and r["contribution_hi"] is None
    assert sum(r["contribution"] for r in rows) == pytest.approx(p["outlier_score"], rel=1e-6)
    by_node = {r["node"]: r for r in rows}
    assert (by_node[GAP]["service"], by_node[GAP]["kind"]) == ("db", "call_gap")
    assert (by_node[AUTH]["service"], by_node[AUTH]["operation"], by_node[AUTH]["kind"]) == ("auth", "check", "span")
    assert p["graph"] == [{"source": a, "target": b, "source_contribution": pytest.approx(expl.contributions[a])}
                          for a, b in EDGES]


def test_non_finite_numbers_become_none_or_zero_and_intervals_are_kept(fitted: FittedModel) -> None:
    tf, latency, own = slow_db_trace()
    expl = rca_engine.Explanation(
        target=ENTRY, target_value=63.5, outlier_score=float("inf"),
        contributions={DB: float("nan"), AUTH: 2.0}, root_causes=[AUTH],
        counterfactuals={DB: float("inf"), AUTH: 1.0}, intervals={AUTH: (1.5, float("nan"))})
    p = build_payload("t", tf, fitted, expl, {**latency, DB: float("nan")}, own, 50, 0.1, threshold=7.0)
    assert p["outlier_score"] == 0.0 and p["rarer_than"] == 1.0 and p["is_outlier"] is False
    rows = {r["node"]: r for r in p["contributions"]}
    assert rows[DB]["contribution"] == 0.0 and rows[DB]["counterfactual_latency_ms"] is None
    assert rows[DB]["node_latency_ms"] is None and rows[AUTH]["share"] == 0.0  # no score: no shares
    assert (rows[AUTH]["contribution_lo"], rows[AUTH]["contribution_hi"]) == (1.5, None)
    assert p["intervals"] == 50


def test_target_latency_falls_back_to_the_trace_duration(fitted: FittedModel) -> None:
    tf, latency, own = slow_db_trace()
    expl = rca_engine.attribute(fitted.model, ENTRY, latency, base=SCORE_BASE, seed=0)
    without_entry = {k: v for k, v in latency.items() if k != ENTRY}
    assert build_payload("t", tf, fitted, expl, without_entry, own, 0, 0.0, 7.0)["target_latency_ms"] == 99.0


def test_rarity_and_summary_texts(fitted: FittedModel) -> None:
    assert rarer_than(math.log(1000)) == pytest.approx(1000)
    assert math.isfinite(rarer_than(1e6)) and rarer_than(1e6) == rarer_than(700.0)
    assert rarer_text(1234.4) == "1,234" and rarer_text(2.5e12) == "2.5e+12"
    tf, latency, own = slow_db_trace()
    expl = rca_engine.attribute(fitted.model, ENTRY, latency, base=SCORE_BASE, seed=0)
    p = build_payload("t", tf, fitted, expl, latency, own, 0, 0.0, 7.0)
    positive = [r for r in p["contributions"] if r["contribution"] > 0]
    assert top_contributors(p, 2) == positive[:2]
    gap_row = next(r for r in p["contributions"] if r["node"] == GAP)
    assert contributor_label(gap_row) == "network to db SELECT"
    assert contributor_label(p["contributions"][0]) == "db SELECT"
    text = summary_text(p, 1)
    assert text.startswith(f"{ENTRY} took 63.5 ms (IT score {p['outlier_score']:.1f}, rarer than 1 in ")
    first = positive[0]
    assert text.endswith(f": db SELECT {first['contribution']:.2f} nats ({100 * first['share']:.0f}%)")
    nothing = dataclasses.replace(expl, contributions={k: -1.0 for k in expl.contributions})
    q = build_payload("t", tf, fitted, nothing, latency, own, 0, 0.0, 7.0)
    assert ":" not in summary_text(q).split(")")[-1]  # no positive contributor: the head alone
