"""Regressions in the results store: the continuous detection (plugin.watch) keeps what it finds in the
`regressions` table of a real SQLite store, and a new watch over the same data directory (a restarted server)
lists it again; stored answers are listed by plugin.regression with their filters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collector_processor import open_store
from collector_processor.records import COUNT, LAT, OWN, AnalysedBatch
from plugin.errors import InvalidArgument
from plugin.incident_ranking import MINUTE_NS, MinuteVerdicts
from plugin.regression import RegressionAnalyser
from plugin.results_store import RegressionRecord, follow_retention
from plugin.sqlite_results import open_results_store
from plugin.watch import ALERT_SCORE, RegressionWatch
from tests.support.shift_traffic import ENTRY, graph, traffic

T0 = 29_000_000 * MINUTE_NS  # 2025


def as_batch(frame: pd.DataFrame) -> AnalysedBatch:
    """Shift-traffic rows as the collector stores them: latency and own time per node, one call each."""
    g = graph()
    nodes = list(g.nodes)
    callees: dict[str, list[str]] = {n: [b for a, b in g.call_edges if a == n] for n in nodes}
    n = len(frame)
    lat = frame[nodes].to_numpy()
    own = lat - np.column_stack([frame[callees[v]].sum(axis=1).to_numpy() if callees[v] else np.zeros(n)
                                 for v in nodes])
    values = np.zeros((n * len(nodes), 6))
    values[:, LAT], values[:, OWN], values[:, COUNT] = lat.ravel(), own.ravel(), 1.0
    return AnalysedBatch(
        trace_ids=[f"{abs(hash(t)) % 16**32:032x}" for t in frame.index], entries=[ENTRY] * n,
        start=frame["__start_unix_nano"].to_numpy(dtype=np.int64), duration_ms=lat[:, nodes.index(ENTRY)],
        complete=np.ones(n, dtype=bool), n_spans=np.full(n, len(nodes)),
        f_trace=np.repeat(np.arange(n), len(nodes)), f_node_idx=np.tile(np.arange(len(nodes)), n), nodes=nodes,
        values=values, node_info={v: (i.service, i.operation, i.kind) for v, i in g.nodes.items()},
        graph_nodes={(ENTRY, v): [n, 0, n if len(callees[v]) > 1 else 0] for v in nodes},
        graph_edges={(ENTRY, a, b): n for a, b in g.call_edges})


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(5)
    traces = open_store(tmp_path)
    for m in range(-40, 0):  # 40 quiet minutes, then a sustained slowdown of pay for 5 minutes
        traces.write_batch(as_batch(traffic(40, rng, start_ns=T0 + m * MINUTE_NS, spacing_ns=MINUTE_NS // 40)))
    traces.write_batch(as_batch(traffic(400, rng, slow="pay:POST /pay", fraction=1.0, start_ns=T0,
                                        spacing_ns=5 * MINUTE_NS // 400)))
    traces.close()
    return tmp_path


def _watch(traces, results, published) -> RegressionWatch:
    return RegressionWatch(traces, traces.entry_points, published.append, MinuteVerdicts(), results=results)


def test_a_watch_finding_is_stored_and_listed_after_a_restart(data_dir):
    traces, results = open_store(data_dir), open_results_store(data_dir)
    published: list[dict] = []
    found = _watch(traces, results, published).check(now_ns=T0 + 5 * MINUTE_NS)
    assert len(found) == 1 and found[0]["lead_service"] == "pay" and found[0]["outlier_score"] >= ALERT_SCORE
    stored = results.regressions(source="watch")
    assert [r.entry for r in stored] == [ENTRY] and stored[0].top_service == "pay"
    assert (stored[0].from_unix_nano, stored[0].to_unix_nano) == (T0, T0 + 5 * MINUTE_NS)
    results.close()
    traces.close()
    # a restarted server: new stores over the same directory, a new watch that has checked nothing yet
    traces, results = open_store(data_dir), open_results_store(data_dir)
    follow_retention(traces, results)
    watch = _watch(traces, results, [])
    recent = watch.recent(ENTRY)
    assert [p["trace_id"] for p in recent] == [found[0]["trace_id"]] and recent[0]["summary"] == found[0]["summary"]
    analyser = RegressionAnalyser(traces, None, lambda e: e, results)  # type: ignore[arg-type]
    listed = analyser.stored(entry=ENTRY)["regressions"]
    assert listed[0]["source"] == "watch" and listed[0]["top_service"] == "pay"
    assert listed[0]["regression"]["lead_service"] == "pay" and listed[0]["to_ms"] == (T0 + 5 * MINUTE_NS) // 10**6
    assert analyser.stored(source="query")["regressions"] == []
    assert analyser.stored(end=str((T0 - MINUTE_NS) // 10**6))["regressions"] == []  # windows before T0 - 1 min
    with pytest.raises(InvalidArgument, match="source"):
        analyser.stored(source="nope")
    # retention: once every trace of its window is gone, so is the regression
    assert traces.retention(max_rows=0) > 0
    assert results.regressions() == []
    results.close()
    traces.close()


def test_the_same_key_replaces_a_stored_regression(tmp_path):
    results = open_results_store(tmp_path)
    for change in (1.0, 2.0):
        results.save_regression(RegressionRecord("query:x", "query", ENTRY, T0, T0 + 1, {"observed_change": change}))
    assert [r.payload for r in results.regressions()] == [{"observed_change": 2.0}]
    results.close()
