"""Results store conformance: the SQLite results store beside the collector's SQLite trace store in one database
file, and the ClickHouse results store beside the ClickHouse trace store in one database (chdb in-process, and
clickhouse-connect over the test HTTP front), run the same tests: outlier marks joined with their traces,
explanations, models, forgetting what retention deletes, and an existing store's results."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from collector_processor import open_store
from collector_processor.records import AnalysedBatch
from plugin.clickhouse_results import open_clickhouse_stores
from plugin.results_store import RegressionRecord, follow_retention
from plugin.sqlite_results import open_results_store
from tests.support.chdb import fresh_url, http_front_url

ENTRY = "svc:GET /r"
OTHER = "web:GET /"
T0 = 1_700_000_000_000_000_000


def tid(t: int) -> str:
    return f"{t:032x}"


def batch(ts: list[int], entry: str = ENTRY) -> AnalysedBatch:
    """Traces `ts` of one entry point, a root and one child each, trace t starting t seconds after T0."""
    n = len(ts)
    values = np.zeros((2 * n, 6))
    values[:, 0] = [100.0 + t if i % 2 == 0 else 50.0 for t in ts for i in range(2)]
    return AnalysedBatch(
        trace_ids=[tid(t) for t in ts], entries=[entry] * n,
        start=np.array([T0 + t * 1_000_000_000 for t in ts], dtype=np.int64),
        duration_ms=np.array([100.0 + t for t in ts]), complete=np.ones(n, dtype=bool),
        n_spans=np.full(n, 2), f_trace=np.repeat(np.arange(n), 2), f_node_idx=np.tile([0, 1], n),
        nodes=[entry, "db:SELECT"], values=values,
        node_info={entry: ("svc", "GET /r", "span"), "db:SELECT": ("db", "SELECT", "db")},
        graph_nodes={(entry, entry): [n, 0, 0], (entry, "db:SELECT"): [n, 0, 0]},
        graph_edges={(entry, entry, "db:SELECT"): n},
    )


def _open(kind: str, where):
    if kind == "sqlite":
        traces = open_store(where)
        results = open_results_store(where)
        follow_retention(traces, results)
        return traces, results
    return open_clickhouse_stores(where)


@pytest.fixture(params=["sqlite", "clickhouse", "clickhouse-http"])
def stores(request, tmp_path):
    where = {"sqlite": tmp_path, "clickhouse": fresh_url(), "clickhouse-http": http_front_url()}[request.param]
    traces, results = _open("sqlite" if request.param == "sqlite" else "clickhouse", where)
    traces.write_batch(batch([1, 2, 3, 4, 5]))
    traces.write_batch(batch([6], OTHER))
    yield traces, results
    results.close()
    traces.close()


def test_outlier_marks_join_their_traces(stores):
    traces, results = stores
    results.mark_outlier(tid(2), 3.0)
    results.mark_outlier(tid(4), 9.0)
    results.mark_outlier(tid(4).upper(), 10.0)  # update, ids case-insensitive
    results.mark_outlier(tid(6), 5.0)
    marks = results.outliers()
    assert [m.trace_id for m in marks] == [tid(6), tid(4), tid(2)]
    assert (marks[1].score, marks[1].entry, marks[1].start_unix_nano, marks[1].duration_ms) == (
        10.0, ENTRY, T0 + 4_000_000_000, 104.0)
    assert [m.trace_id for m in results.outliers(min_score=5, entry=ENTRY)] == [tid(4)]
    assert [m.trace_id for m in results.outliers(T0 + 2_000_000_000, T0 + 5_000_000_000)] == [tid(4), tid(2)]
    assert results.outliers(entry="other:x") == [] and len(results.outliers(limit=1)) == 1
    assert results.outlier_ids() == {tid(2), tid(4), tid(6)} and results.outlier_ids(ENTRY) == {tid(2), tid(4)}
    # what model training reads: the entry point's traces without its outliers, newest `limit` of them
    normal = traces.features(ENTRY, exclude=results.outlier_ids(ENTRY), limit=2)
    assert list(normal.index) == [tid(3), tid(5)] and list(normal[ENTRY]) == [103.0, 105.0]


def test_explanations_and_models(stores):
    _, results = stores
    payload = {"version": 1, "trace_id": tid(4), "outlier_score": np.float64(10.0), "contributions": []}
    results.save_explanation(tid(4), payload)  # numpy scalars are stored as JSON numbers
    assert results.explanation(tid(4)) == {"version": 1, "trace_id": tid(4), "outlier_score": 10.0,
                                           "contributions": []}
    assert results.explanation(tid(3)) is None
    with pytest.raises(ValueError):
        results.save_explanation(tid(3), {"outlier_score": float("nan")})  # JSON has no NaN
    results.save_model(ENTRY, b"\x00blob", {"n": 5})
    results.save_model(ENTRY, b"\x00blob2", {"n": 6})
    assert results.load_model(ENTRY) == (b"\x00blob2", {"n": 6}) and results.load_model("x") is None
    assert results.counts() == {"outliers": 0, "explanations": 1, "models": 1,
                                "error_outliers": 0, "error_explanations": 0, "regressions": 0}


def test_trace_retention_deletes_the_results_of_its_traces(stores):
    traces, results = stores
    for t in (1, 2, 5):
        results.mark_outlier(tid(t), 4.0)
        results.save_explanation(tid(t), {"version": 1})
    results.save_model(ENTRY, b"m")
    assert traces.retention(max_rows=4) == 2  # traces 1 and 2 (the oldest) go, and their results with them
    assert results.outlier_ids() == {tid(5)} and results.explanation(tid(1)) is None
    assert results.explanation(tid(5)) == {"version": 1}
    assert results.counts() == {"outliers": 1, "explanations": 1, "models": 1, "error_outliers": 0,
                                "error_explanations": 0, "regressions": 0}  # models are per entry point
    assert results.forget([]) == 0 and results.forget([tid(5)]) == 2


def _regression(key: str, lo_s: int, hi_s: int, source: str = "query", entry: str = ENTRY,
                change: float = 5.0) -> RegressionRecord:
    payload = {"entry": entry, "stat": "p99", "observed_change": change, "significant": True,
               "services": [{"service": "svc", "contribution": change}], "summary": f"p99 {change:+g} ms"}
    if source == "watch":
        payload = {"entry": entry, "kind": "regression", "lead_service": "db", "summary": "db shifted"}
    return RegressionRecord(key, source, entry, T0 + lo_s * 1_000_000_000, T0 + hi_s * 1_000_000_000, payload)


def test_regressions_are_kept_listed_and_follow_retention(stores):
    traces, results = stores
    results.save_regression(_regression("a", 1, 3))
    results.save_regression(_regression("b", 3, 6, source="watch"))
    results.save_regression(_regression("a", 1, 3, change=7.0))  # the same key again replaces it
    results.save_regression(_regression("c", 5, 7, entry=OTHER))
    listed = results.regressions()
    assert [r.key for r in listed] == ["c", "b", "a"]  # newest window first
    assert listed[2].payload["observed_change"] == 7.0 and listed[2].top_service == "svc"
    assert listed[2].from_unix_nano == T0 + 1_000_000_000 and listed[2].created_unix_nano > 0
    assert listed[1].source == "watch" and listed[1].top_service == "db" and listed[1].summary == "db shifted"
    assert [r.key for r in results.regressions(entry=ENTRY)] == ["b", "a"]
    assert [r.key for r in results.regressions(source="watch")] == ["b"]
    assert [r.key for r in results.regressions(from_unix_nano=T0 + 4_000_000_000)] == ["c", "b"]
    assert [r.key for r in results.regressions(to_unix_nano=T0 + 3_000_000_000)] == ["a"]
    assert len(results.regressions(limit=1)) == 1 and results.counts()["regressions"] == 3
    # retention deletes traces 1..3: regression a's window (1 s .. 3 s) has no trace left, so it goes too
    assert traces.retention(max_rows=3) == 3
    assert [r.key for r in results.regressions()] == ["c", "b"]
    with pytest.raises(ValueError, match="source"):
        RegressionRecord("x", "guess", ENTRY, 0, 1, {})


def test_data_dir_keeps_its_results_and_forgets_orphans_on_open(tmp_path):
    traces = open_store(tmp_path)
    traces.write_batch(batch([1, 2]))
    results = open_results_store(tmp_path)
    results.mark_outlier(tid(1), 6.0)
    results.mark_outlier(tid(2), 7.0)
    results.save_explanation(tid(2), {"version": 1})
    results.save_model(ENTRY, b"m", {"rows": 2})
    results.close()
    traces.retention(max_rows=1)  # no results store listening: a crash between the two deletions
    traces.close()
    # tables of the same name in the same file (as the collector's store kept them before): read as they are
    con = sqlite3.connect(tmp_path / "whyslow.sqlite3")
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "outliers", "explanations", "models", "traces"}
    con.close()
    traces, results = open_store(tmp_path), open_results_store(tmp_path)
    try:
        assert [m.trace_id for m in results.outliers()] == [tid(2)]
        assert results.outlier_ids() == {tid(2)}  # trace 1's mark was forgotten when the store opened
        assert results.load_model(ENTRY) == (b"m", {"rows": 2})
    finally:
        results.close()
        traces.close()
    with pytest.raises(RuntimeError):
        results.outliers()
    with pytest.raises(ValueError):
        open_results_store(tmp_path, synchronous="sometimes")


def test_latency_and_error_results_are_kept_apart(stores):
    traces, results = stores
    results.mark_outlier(tid(3), 9.5)                       # slow
    results.mark_outlier(tid(3), 11.0, kind="error")        # and failed
    results.mark_outlier(tid(5), 12.0, kind="error")        # failed only
    marks = results.outliers()
    assert [(m.trace_id, m.kind, m.score) for m in marks] == [
        (tid(5), "error", 12.0), (tid(3), "latency", 9.5), (tid(3), "error", 11.0)]
    assert [m.trace_id for m in results.outliers(kind="error", min_score=11.5)] == [tid(5)]
    assert results.outlier_ids(ENTRY) == {tid(3), tid(5)}   # training leaves out both kinds
    results.save_explanation(tid(3), {"version": 1, "kind": "latency", "outlier_score": 9.5})
    results.save_explanation(tid(3), {"version": 1, "kind": "error", "outlier_score": 11.0})
    assert results.explanation(tid(3))["outlier_score"] == 9.5
    assert results.explanation(tid(3), "error")["outlier_score"] == 11.0
    with pytest.raises(ValueError, match="kind must be"):
        results.mark_outlier(tid(3), 1.0, kind="cpu")
    traces.retention(max_rows=1)                            # the traces go: both kinds of results with them
    assert results.counts()["error_outliers"] == 0 and results.counts()["error_explanations"] == 0


def test_clickhouse_store_keeps_its_results_and_forgets_orphans_on_open():
    url = fresh_url()
    traces, results = open_clickhouse_stores(url)
    traces.write_batch(batch([1, 2]))
    results.mark_outlier(tid(1), 6.0)
    results.mark_outlier(tid(2), 7.0)
    results.save_model(ENTRY, b"\x00m\xff", {"rows": 2})
    traces._delete_listeners.clear()  # no results store listening: a crash between the two deletions
    assert traces.retention(max_rows=1) == 1
    traces.close()
    traces, results = open_clickhouse_stores(url)
    try:
        assert [m.trace_id for m in results.outliers()] == [tid(2)] and results.outlier_ids() == {tid(2)}
        assert results.load_model(ENTRY) == (b"\x00m\xff", {"rows": 2})
    finally:
        results.close()
        traces.close()
    with pytest.raises(RuntimeError):
        results.outliers()
