"""plugin.service: the read side every API calls (entry points, graph statistics, explanations, outliers, status)
on real SQLite stores, a real model manager and the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collector_processor import open_store
from plugin.config import ServeConfig
from plugin.errors import InvalidArgument, NoModel, NotFound
from plugin.explain import Explainer
from plugin.metrics import ServerMetrics
from plugin.models import ModelManager
from plugin.results_store import follow_retention
from plugin.service import VERSION, WhySlowService, outlier_summary
from plugin.sqlite_results import open_results_store
from tests.support.analysed import DB, ENTRY, entry_db_batch, normal_batch, trace_id

SLOW, NORMAL = 1001, 1000


@pytest.fixture
def service(tmp_path):
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    follow_retention(traces, results)
    traces.write_batch(normal_batch(200))
    traces.write_batch(entry_db_batch([NORMAL, SLOW], np.array([20.0, 250.0]), np.array([5.0, 5.0])))
    config = ServeConfig(data_dir=str(tmp_path), min_traces=100, window=500, threshold=math.log(10_000))
    models = ModelManager(traces, results, config, ServerMetrics())
    models.load()
    yield WhySlowService(traces, results, models, Explainer(traces, results, models, config), config)
    results.close()
    traces.close()


def test_the_only_entry_point_is_the_default_and_others_are_refused(service: WhySlowService) -> None:
    assert service.entries() == [ENTRY] and service.resolve_entry(None) == ENTRY
    with pytest.raises(NotFound, match="unknown entry point web:GET /"):
        service.resolve_entry("web:GET /")
    service.traces.write_batch(entry_db_batch([5000], np.array([1.0]), np.array([1.0])))
    other = entry_db_batch([5001], np.array([1.0]), np.array([1.0]))
    other.entries = ["web:GET /"]
    service.traces.write_batch(other)
    with pytest.raises(InvalidArgument, match=f"entry is required: one of {ENTRY}, web:GET /"):
        service.resolve_entry("")


def test_graph_statistics_are_the_percentiles_of_the_stored_latencies(service: WhySlowService) -> None:
    g = service.graph(None)
    frame = service.traces.features(ENTRY, limit=500)
    assert g["entry"] == ENTRY and g["traces"] == len(frame) == 202 and g["model"] == "learning"
    nodes = {n["id"]: n for n in g["nodes"]}
    assert set(nodes) == {ENTRY, DB} and nodes[DB]["kind"] == "db" and nodes[ENTRY]["mechanism"] == "sum"
    for node in (ENTRY, DB):
        values = frame[node].to_numpy(dtype=float)
        stats = nodes[node]["stats"]
        assert stats["traces"] == 202 and stats["mean_ms"] == pytest.approx(values.mean())
        assert [stats["p50_ms"], stats["p95_ms"], stats["p99_ms"]] == pytest.approx(
            np.percentile(values, [50, 95, 99]).tolist())
    assert g["call_edges"] == [{"caller": ENTRY, "callee": DB}]
    assert g["causal_edges"] == [{"source": DB, "target": ENTRY}]


def test_explanations_outliers_and_status(service: WhySlowService) -> None:
    with pytest.raises(InvalidArgument):
        service.explain("not a trace id")
    with pytest.raises(NoModel, match="still learning"):
        service.explain(trace_id(SLOW))
    with pytest.raises(NotFound, match="is not stored"):
        service.explain("f" * 32)
    service.models.fit(ENTRY)
    assert service.outliers() == []
    slow = service.explain(trace_id(SLOW))
    normal = service.explain(trace_id(NORMAL))
    assert slow["is_outlier"] and not normal["is_outlier"]
    listed = service.outliers()
    assert [o["trace_id"] for o in listed] == [trace_id(SLOW)]  # only outliers are persisted and listed
    assert listed[0] == outlier_summary(slow)
    assert listed[0]["root_cause_node"] == DB and listed[0]["root_cause_service"] == "db"
    assert service.outliers(min_score=slow["outlier_score"] + 1) == []
    assert service.outliers(entry="web:GET /") == []
    incident = service.incident()
    assert incident["entries"] == [ENTRY] and incident["from_ms"] is None
    status = service.status()
    assert status["version"] == VERSION and status["pipeline"] == {} and status["detector"] == {}
    assert status["threshold_rarer_than"] == pytest.approx(10_000)
    assert [(m["entry"], m["state"]) for m in status["models"]] == [(ENTRY, "ready")]
    assert service.graph(ENTRY)["model"] == "ready"
