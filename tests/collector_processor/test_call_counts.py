"""Calls per request as the trace stores give them (``features(value="count")``, the regression's call
structure): each node's number of spans in a trace, 0 where it was not called, row for row with the latencies;
SQLite and ClickHouse alike."""

from __future__ import annotations

import pytest

from collector_processor import Pipeline, PipelineConfig, open_store
from tests.support.otlp_build import CLIENT, SERVER
from tests.support.otlp_build import request as otlp_request
from tests.support.pipeline import complete_all


def _trace(t: int, queries: int) -> list[dict]:
    """front GET / -> api GET /api, which queries the database ``queries`` times (1 ms each)."""
    spans = [
        {"service": "front", "trace": t, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0, "end_ms": 20},
        {"service": "front", "trace": t, "span": 2, "parent": 1, "name": "call api", "kind": CLIENT, "start_ms": 1,
         "end_ms": 19},
        {"service": "api", "trace": t, "span": 3, "parent": 2, "name": "GET /api", "kind": SERVER, "start_ms": 2,
         "end_ms": 18},
    ]
    spans += [{"service": "api", "trace": t, "span": 10 + q, "parent": 3, "name": "SELECT", "kind": CLIENT,
               "start_ms": 3 + 2 * q, "end_ms": 4 + 2 * q, "attrs": {"peer.service": "db"}} for q in range(queries)]
    return spans


@pytest.fixture(params=["sqlite", "clickhouse"])
def store(request, tmp_path):
    if request.param == "sqlite":
        st = open_store(tmp_path)
    else:
        from collector_processor.clickhouse_store import ClickHouseTraceStore
        from collector_processor.sql_executor import connect
        from tests.support.chdb import fresh_url

        st = ClickHouseTraceStore(connect(fresh_url()))
    pipe = Pipeline(st, PipelineConfig(background=False))
    pipe.accept(otlp_request(_trace(1, 1) + _trace(2, 3) + _trace(3, 0)).SerializeToString())
    complete_all(pipe)
    yield st
    pipe.close()
    st.close()


def test_calls_per_request_row_for_row_with_the_latencies(store):
    entry = store.entry_points()[0]
    counts, lat = store.features(entry, value="count"), store.features(entry)
    assert list(counts.columns) == list(lat.columns) and list(counts.index) == list(lat.index)
    db = next(c for c in counts.columns if c.startswith("db:"))
    by_trace = {t[-1]: row for t, row in counts.iterrows()}
    assert [by_trace[t][db] for t in "123"] == [1, 3, 0]
    assert [by_trace[t][entry] for t in "123"] == [1, 1, 1]
    assert {t[-1]: row[db] for t, row in lat.iterrows()} == pytest.approx({"1": 1.0, "2": 3.0, "3": 0.0})
    with pytest.raises(ValueError, match="count"):
        store.features(entry, value="calls")
