"""Trace store conformance: the same tests run against the SQLite store and the ClickHouse store (the real
ClickHouse engine in-process via chdb, and through clickhouse-connect, the production client, over the test
HTTP front): features pivot and filters, retention and its delete listeners, concurrent readers, incomplete
traces and the recursion guard of the call graph. (The backend's results -- outlier marks, explanations,
models -- are in tests/plugin/test_results_store.py.)"""

from __future__ import annotations

import threading
import time

import networkx as nx
import pytest

from collector_processor import open_store
from collector_processor.clickhouse_store import ClickHouseTraceStore
from collector_processor.sql_executor import connect
from tests.support.chdb import fresh_url, http_front_url
from tests.support.otlp_build import CLIENT, SERVER, T0, chain, request
from tests.support.pipeline import complete_all

ENTRY = "svc:GET /r"


@pytest.fixture(params=["sqlite", "clickhouse", "clickhouse-http"])
def store(request, tmp_path):
    """Every test of this module runs on each backend (the pipeline fixtures write into this store too)."""
    if request.param == "sqlite":
        st = open_store(tmp_path / "data")
    else:
        st = ClickHouseTraceStore(connect(fresh_url() if request.param == "clickhouse" else http_front_url()))
    yield st
    st.close()


@pytest.fixture
def filled(pipeline, store):
    for t in range(1, 6):
        spans = chain(t)
        for s in spans:
            s["start_ms"] += t * 1000
            s["end_ms"] += t * 1000 + (t if s["span"] == 1 else 0)
        pipeline.accept(request(spans))
    complete_all(pipeline)
    return store


def tid(t: int) -> str:
    return f"{t:032x}"


def test_features_filters(filled):
    df = filled.features(ENTRY)
    assert list(df.index) == [tid(t) for t in range(1, 6)]
    assert list(df["__duration_ms"]) == [101.0, 102.0, 103.0, 104.0, 105.0]
    assert list(filled.features(ENTRY, limit=2).index) == [tid(4), tid(5)]
    since = T0 + 3000 * 1_000_000
    assert list(filled.features(ENTRY, since_unix_nano=since).index) == [tid(3), tid(4), tid(5)]
    assert list(filled.features(ENTRY, until_unix_nano=since).index) == [tid(1), tid(2)]
    assert tid(5) not in filled.features(ENTRY, exclude={tid(5)}).index
    assert list(filled.features(ENTRY, limit=2, exclude=[tid(5), "f" * 32]).index) == [tid(3), tid(4)]
    assert list(filled.features(ENTRY, exclude=[tid(1).upper()]).index) == [tid(t) for t in range(2, 6)]
    assert filled.features("nope:nothing").empty


def test_retention_goes_in_chunks(filled, monkeypatch):
    """However far a store outgrew its bounds, retention deletes a bounded number of traces at a time."""
    from collector_processor import clickhouse_store, sqlite_store

    for module in (clickhouse_store, sqlite_store):
        monkeypatch.setattr(module, "RETENTION_CHUNK", 2)
    deleted: list[list[str]] = []
    filled.on_delete(lambda ids: deleted.append(sorted(ids)))
    assert filled.retention(max_rows=1) == 4
    assert sorted(len(d) for d in deleted) == [2, 2]
    assert sorted(t for d in deleted for t in d) == [tid(1), tid(2), tid(3), tid(4)]
    assert list(filled.features(ENTRY).index) == [tid(5)]


def test_retention_by_rows_and_age(filled):
    deleted: list[list[str]] = []
    filled.on_delete(lambda ids: deleted.append(sorted(ids)))
    assert filled.retention(max_rows=3) == 2
    assert list(filled.features(ENTRY).index) == [tid(3), tid(4), tid(5)]
    assert deleted == [[tid(1), tid(2)]]  # the listeners hear which traces went
    assert filled.retention(max_rows=3) == 0 and len(deleted) == 1  # nothing deleted: nobody called
    # the traces started in 2023 (T0): all are older than a day
    assert filled.retention(max_age_s=86400) == 3
    assert filled.counts()["traces"] == 0 and filled.counts()["trace_nodes"] == 0
    assert deleted[-1] == [tid(3), tid(4), tid(5)]


def test_concurrent_readers_and_writer(pipeline, store):
    errors = []
    stop = threading.Event()

    def read():
        try:
            while not stop.is_set():
                for e in store.entry_points():
                    store.features(e)
                    store.graph(e)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    for t in range(100, 140):
        pipeline.accept(request(chain(t)))
        if t % 10 == 0:
            complete_all(pipeline)
    complete_all(pipeline)
    stop.set()
    for r in readers:
        r.join()
    assert errors == [] and store.counts()["traces"] == 40


def test_recursive_calls_keep_the_causal_graph_acyclic(pipeline, store):
    # a -> b -> a (same operation): the span-type graph has a cycle; the graph drops the closing edge
    spans = [
        {"service": "a", "trace": 70, "span": 1, "name": "GET /a", "kind": SERVER, "start_ms": 0, "end_ms": 100},
        {"service": "a", "trace": 70, "span": 2, "parent": 1, "name": "call b", "kind": CLIENT, "start_ms": 1, "end_ms": 90},
        {"service": "b", "trace": 70, "span": 3, "parent": 2, "name": "GET /b", "kind": SERVER, "start_ms": 2, "end_ms": 89},
        {"service": "b", "trace": 70, "span": 4, "parent": 3, "name": "call a", "kind": CLIENT, "start_ms": 3, "end_ms": 80},
        {"service": "a", "trace": 70, "span": 5, "parent": 4, "name": "GET /a", "kind": SERVER, "start_ms": 4, "end_ms": 79},
    ]
    pipeline.accept(request(spans))
    complete_all(pipeline)
    cg = store.graph("a:GET /a")
    assert nx.is_directed_acyclic_graph(nx.DiGraph(cg.call_edges))
    assert ("net:a:GET /a", "a:GET /a") not in cg.call_edges
    assert store.trace_features(tid(70)).nodes["a:GET /a"].count == 2


def test_store_reopens_with_its_data(tmp_path):
    st = open_store(tmp_path)
    sid = st.spool_append(b"request")
    st.close()
    st = open_store(tmp_path)
    assert list(st.spool_pending()) == [(sid, b"request")]
    with pytest.raises(ValueError):
        open_store(tmp_path, synchronous="sometimes")
    st.close()
    with pytest.raises(RuntimeError):
        st.entry_points()


def test_clickhouse_store_reopens_with_its_data():
    url = fresh_url()
    st = ClickHouseTraceStore(connect(url), replica="1")
    sid = st.spool_append(b"\x00request\xff")
    st.close()
    st = ClickHouseTraceStore(connect(url), replica="1")  # CREATE ... IF NOT EXISTS: tables and rows kept
    assert list(st.spool_pending()) == [(sid, b"\x00request\xff")]
    assert list(ClickHouseTraceStore(connect(url), replica="0").spool_pending()) == []  # each replica its own
    assert st.spool_append(b"next") > sid  # ids keep growing after a restart
    st.close()
    with pytest.raises(RuntimeError):
        st.entry_points()


def test_incomplete_traces_can_be_left_out(make_pipeline, store):
    p = make_pipeline()
    p.accept(request(chain(80)))
    p.accept(request(chain(81)[1:]))  # no root: stored incomplete at flush
    p.flush()
    # the rootless trace has its own entry (its top span); the complete one is the only one under ENTRY
    assert list(store.features(ENTRY, complete_only=True).index) == [tid(80)]
    assert time.time() > 0
