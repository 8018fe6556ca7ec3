"""plugin.detector: the outlier hub's fan-out, and the detector scoring, flagging and explaining completed traces
with real stores (SQLite), a real model manager and the engine."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import rca_engine
from collector_processor import open_store
from collector_processor.records import COUNT, LAT, OWN, AnalysedBatch, CompletedTrace
from plugin.config import ServeConfig
from plugin.detector import Detector, OutlierHub
from plugin.explain import Explainer
from plugin.metrics import ServerMetrics
from plugin.models import SCORE_BASE, ModelManager, feature_matrix
from plugin.results_store import follow_retention
from plugin.sqlite_results import open_results_store

ENTRY, DB = "shop:GET /cart", "db:SELECT"
T0 = 1_700_000_000_000_000_000


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


def traces_batch(ids: list[int], db_ms: np.ndarray, own_ms: np.ndarray) -> AnalysedBatch:
    """Traces of ENTRY calling DB once: entry latency = db + own time."""
    n = len(ids)
    values = np.zeros((2 * n, 6))
    values[0::2, LAT], values[0::2, OWN] = db_ms + own_ms, own_ms
    values[1::2, LAT], values[1::2, OWN] = db_ms, db_ms
    values[:, COUNT] = 1
    return AnalysedBatch(
        trace_ids=[f"{i:032x}" for i in ids], entries=[ENTRY] * n,
        start=np.array([T0 + i * 1_000_000 for i in ids], dtype=np.int64), duration_ms=db_ms + own_ms,
        complete=np.ones(n, dtype=bool), n_spans=np.full(n, 2), f_trace=np.repeat(np.arange(n), 2),
        f_node_idx=np.tile([0, 1], n), nodes=[ENTRY, DB], values=values,
        node_info={ENTRY: ("shop", "GET /cart", "span"), DB: ("db", "SELECT", "db")},
        graph_nodes={(ENTRY, ENTRY): [n, 0, n], (ENTRY, DB): [n, 0, 0]}, graph_edges={(ENTRY, ENTRY, DB): n},
    )


def completed(i: int, db_ms: float, own_ms: float) -> CompletedTrace:
    return CompletedTrace(f"{i:032x}", ENTRY, T0 + i * 1_000_000, db_ms + own_ms, True,
                          {ENTRY: db_ms + own_ms, DB: db_ms}, 2)


@pytest.fixture
def stack(tmp_path):
    rng = np.random.default_rng(0)
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    follow_retention(traces, results)
    n = 300
    traces.write_batch(traces_batch(list(range(n)), rng.lognormal(np.log(20), 0.2, n), rng.lognormal(np.log(5), 0.2, n)))
    # the two traces to score: a normal one and one whose database took 10x its usual time
    traces.write_batch(traces_batch([1000, 1001], np.array([20.0, 200.0]), np.array([5.0, 5.0])))
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
