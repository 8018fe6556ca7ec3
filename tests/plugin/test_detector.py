"""plugin.detector: the outlier hub's fan-out, and the detector scoring, flagging and explaining completed traces
with real stores (SQLite), a real model manager and the engine."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import rca_engine
from collector_processor import open_store
from plugin.config import ServeConfig
from plugin.detector import Detector, OutlierHub
from plugin.explain import Explainer
from plugin.metrics import ServerMetrics
from plugin.models import SCORE_BASE, ModelManager, feature_matrix
from plugin.results_store import follow_retention
from plugin.sqlite_results import open_results_store
from tests.support.analysed import DB, ENTRY, completed, entry_db_batch, normal_batch


def payload(i: int) -> dict:
    return {"trace_id": f"{i:032x}"}


def test_hub_fans_out_to_every_watcher_and_closes_with_none() -> None:
    hub = OutlierHub()
    a, b = hub.subscribe(), hub.subscribe()
    hub.publish(payload(1))
    assert a.get(1.0) == payload(1) and b.get(1.0) == payload(1)
    b.close()
    hub.publish(payload(2))
    assert a.get(1.0) == payload(2) and b.get(0.05) is None  # unsubscribed: nothing more
    hub.close()
    assert hub.closed.is_set() and a.get(1.0) is None


def test_a_lagging_watcher_drops_its_oldest_payloads() -> None:
    hub = OutlierHub()
    slow = hub.subscribe(maxsize=3)
    for i in range(10):
        hub.publish(payload(i))
    assert slow.dropped == 7
    assert [slow.get(0.1) for _ in range(3)] == [payload(7), payload(8), payload(9)]
    assert slow.get(0.01) is None  # timeout


@pytest.fixture
def stack(tmp_path):
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    follow_retention(traces, results)
    n = 300
    traces.write_batch(normal_batch(n))
    # the two traces to score: a normal one and one whose database took 10x its usual time
    traces.write_batch(entry_db_batch([1000, 1001], np.array([20.0, 200.0]), np.array([5.0, 5.0])))
    config = ServeConfig(data_dir=str(tmp_path), min_traces=50, window=n, threshold=float(np.log(10_000)))
    metrics = ServerMetrics()
    models = ModelManager(traces, results, config, metrics)
    explainer = Explainer(traces, results, models, config, metrics)
    hub = OutlierHub()
    seen: list[dict] = []
    detector = Detector(models, explainer, traces, results, config, metrics, hub, on_outlier=[seen.append])
    yield detector, models, results, hub, seen
    detector.stop(10.0)
    results.close()
    traces.close()


def test_a_trace_is_flagged_and_explained_when_its_entry_score_reaches_the_threshold(stack) -> None:
    detector, models, results, hub, seen = stack
    models.observe(ENTRY, 300)
    fitted = models.fit(ENTRY)
    watcher = hub.subscribe()
    detector.start()
    normal, slow = completed(1000, 20.0, 5.0), completed(1001, 200.0, 5.0)
    for t in (normal, slow):
        detector.on_trace(t)
    assert detector.drain(30.0) and detector.pending == 0

    frame = feature_matrix(pd.DataFrame([normal.row, slow.row]), fitted.columns)
    expected = rca_engine.outlier_scores(fitted.model, frame, base=SCORE_BASE)[ENTRY].to_numpy()
    assert expected[0] < detector.config.threshold <= expected[1]
    c = detector.counters
    assert (c["traces"], c["scored"], c["outliers"], c["explained"], c["explain_errors"]) == (2, 2, 1, 1, 0)
    assert set(results.outlier_ids(ENTRY)) == {slow.trace_id}
    published = watcher.get(5.0)
    assert published is not None and seen == [published]
    assert published["trace_id"] == slow.trace_id and published["contributions"][0]["node"] == DB
    assert published["outlier_score"] == pytest.approx(expected[1], rel=1e-6)
    assert results.explanation(slow.trace_id)["trace_id"] == slow.trace_id


def test_a_stored_batch_is_scored_as_its_traces_are(stack) -> None:
    """The pipeline's batch listener (numpy matrices per entry point) scores exactly as the per-trace path."""
    detector, models, results, _hub, _seen = stack
    models.observe(ENTRY, 300)
    fitted = models.fit(ENTRY)
    detector.start()
    batch = entry_db_batch([1000, 1001, 1002], np.array([20.0, 200.0, 21.0]), np.array([5.0, 5.0, 4.0]))
    detector.on_batch(batch, exclude={f"{1002:032x}"})  # e.g. a fragment split across replicas
    assert detector.drain(30.0) and detector.pending == 0
    rows = [{ENTRY: 25.0, DB: 20.0}, {ENTRY: 205.0, DB: 200.0}]
    expected = rca_engine.outlier_scores(fitted.model, feature_matrix(pd.DataFrame(rows), fitted.columns),
                                         base=SCORE_BASE)[ENTRY].to_numpy()
    assert expected[0] < detector.config.threshold <= expected[1]
    c = detector.counters
    assert (c["traces"], c["scored"], c["outliers"]) == (2, 2, 1)
    assert set(results.outlier_ids(ENTRY)) == {f"{1001:032x}"}


def test_traces_of_a_learning_entry_wait_and_a_failing_callback_does_not_stop_the_others(stack) -> None:
    detector, models, _results, _hub, seen = stack
    detector.score_batch([completed(1000, 20.0, 5.0)])
    assert detector.counters["unscored_learning"] == 1 and detector.counters["scored"] == 0
    calls = []
    barrier = threading.Event()

    def broken(_p: dict) -> None:
        calls.append("broken")
        raise RuntimeError("grafana is down")

    detector.on_outlier.insert(0, broken)
    detector.on_outlier.append(lambda p: barrier.set())
    detector.publish(payload(5))
    assert calls == ["broken"] and seen == [payload(5)] and barrier.is_set()
