"""Error outcomes per span and per (trace, node): status ERROR, exception events, HTTP 5xx and gRPC non-OK status
attributes (an explicit OK status wins), the count of failed spans per node, and the store's 0/1 error table.
Bad error fields (unknown status codes, non-numeric status attributes) are counted, never a crash."""

from __future__ import annotations

import pytest

from collector_processor import Pipeline, PipelineConfig, open_store
from collector_processor.otlp_decode import SpanDecoder, parse_request
from tests.support.otlp_build import CLIENT, INTERNAL, SERVER
from tests.support.otlp_build import request as otlp_request
from tests.support.pipeline import complete_all

OK, ERROR = 1, 2


def _decode(spans: list[dict]) -> tuple[list[bool], object]:
    out = SpanDecoder().decode(parse_request(otlp_request(spans).SerializeToString()))
    return [bool(s[8]) for s in out.spans], out


def _span(n: int, **kw) -> dict:
    return {"service": "a", "trace": 1, "span": n, "name": f"op{n}", "kind": SERVER, "start_ms": 0, "end_ms": 1,
            **kw}


def test_each_error_signal_marks_the_span_failed():
    failed, out = _decode([
        _span(1),                                                        # nothing: ok
        _span(2, status=ERROR),                                          # status ERROR without message
        _span(3, events=["exception"]),                                  # exception event, status unset
        _span(4, events=["log", "cache miss"]),                          # other events: ok
        _span(5, attrs={"http.response.status_code": 503}),              # HTTP 5xx (server)
        _span(6, kind=CLIENT, attrs={"http.status_code": 500}),          # old attribute name, client span
        _span(7, attrs={"http.response.status_code": 404}),              # 4xx: not a server failure
        _span(8, attrs={"rpc.grpc.status_code": 14}),                    # gRPC UNAVAILABLE
        _span(9, attrs={"rpc.grpc.status_code": 0}),                     # gRPC OK
        _span(10, status=OK, events=["exception"], attrs={"http.response.status_code": 500}),  # explicit OK wins
        _span(11, kind=INTERNAL, events=["exception"]),                  # internal spans too
    ])
    assert failed == [False, True, True, False, True, True, False, True, False, False, True]
    assert out.failed == 6 and out.bad_error_fields == 0 and out.rejected == 0


def test_bad_error_fields_are_counted_not_fatal():
    failed, out = _decode([
        _span(1, status=7),                                              # unknown status code
        _span(2, attrs={"http.response.status_code": "502"}),            # numeric string: read
        _span(3, attrs={"http.response.status_code": "Bad Gateway"}),    # not a number: counted
        _span(4, attrs={"rpc.grpc.status_code": ""}),                    # empty: counted
        _span(5, status=7, events=["exception"]),                        # unknown code, exception event
    ])
    assert failed == [False, True, False, False, True]
    assert out.bad_error_fields == 4 and out.rejected == 0 and len(out.spans) == 5


def _trace(t: int, fail_leaf: bool, fail_mid: bool, fail_root: bool, retries: int = 0) -> list[dict]:
    """root (front) -> mid (api) -> leaf (db), with `retries` extra failed leaf calls before a good one."""
    spans = [
        {"service": "front", "trace": t, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0, "end_ms": 20,
         "error": fail_root},
        {"service": "front", "trace": t, "span": 2, "parent": 1, "name": "call api", "kind": CLIENT, "start_ms": 1,
         "end_ms": 19, "error": fail_mid},
        {"service": "api", "trace": t, "span": 3, "parent": 2, "name": "GET /api", "kind": SERVER, "start_ms": 2,
         "end_ms": 18, "error": fail_mid},
    ]
    for r in range(retries + 1):
        bad = fail_leaf and (r < retries or retries == 0)
        spans.append({"service": "api", "trace": t, "span": 10 + r, "parent": 3, "name": "SELECT", "kind": CLIENT,
                      "start_ms": 3 + r, "end_ms": 3 + r + (0 if bad else 1),  # error-only calls take 0 ms
                      "attrs": {"peer.service": "db"}, "error": bad})
    return spans


@pytest.fixture(params=["sqlite", "clickhouse"])
def stored(request, tmp_path):
    if request.param == "sqlite":
        store = open_store(tmp_path)
    else:  # the ClickHouse trace store (in-process chdb) reads the same error table
        from collector_processor.clickhouse_store import ClickHouseTraceStore
        from collector_processor.sql_executor import connect
        from tests.support.chdb import fresh_url

        store = ClickHouseTraceStore(connect(fresh_url()))
    pipe = Pipeline(store, PipelineConfig(background=False))
    completed = []
    pipe.add_listener(completed.append)
    spans = (_trace(1, False, False, False) + _trace(2, True, True, True) + _trace(3, True, False, False, retries=2)
             + _trace(4, False, True, False))
    pipe.accept(otlp_request(spans).SerializeToString())
    complete_all(pipe)
    yield store, pipe, {c.trace_id[-1]: c for c in completed}
    pipe.close()
    store.close()


def test_error_counts_per_node_are_stored_and_reach_listeners(stored):
    store, pipe, done = stored
    entry = done["1"].entry
    err = store.features(entry, value="error")
    lat = store.features(entry)
    assert list(err.columns) == list(lat.columns) and list(err.index) == list(lat.index)
    leaf = next(c for c in err.columns if c.startswith("db:"))
    mid = next(c for c in err.columns if c.startswith("api:"))
    by_trace = {t[-1]: row for t, row in err.iterrows()}
    assert by_trace["1"][[entry, mid, leaf]].tolist() == [0, 0, 0]
    assert by_trace["2"][[entry, mid, leaf]].tolist() == [1, 1, 1]
    assert by_trace["3"][[entry, mid, leaf]].tolist() == [0, 0, 2]      # two failed retries, handled
    assert by_trace["4"][[entry, mid, leaf]].tolist() == [0, 1, 0]
    # error-only calls keep their (zero) latency and their count; the retried leaf's latency is the good call's
    tf = store.trace_features(done["3"].trace_id)
    assert tf.nodes[leaf].errors == 2 and tf.nodes[leaf].error and tf.nodes[leaf].count == 3
    assert tf.nodes[leaf].latency_ms == pytest.approx(1.0)
    assert store.trace_features(done["2"].trace_id).nodes[leaf].latency_ms == pytest.approx(0.0)
    # whether a failed node's error may be its callee's: the propagated chain vs. a mid-level node failing alone
    chain = store.trace_features(done["2"].trace_id).nodes
    assert not chain[leaf].callee_error and all(f.callee_error for n, f in chain.items() if f.error and n != leaf)
    alone = store.trace_features(done["4"].trace_id).nodes
    assert alone[mid].error and not alone[mid].callee_error and not alone[leaf].error
    assert not any(f.callee_error for f in tf.nodes.values())  # the handled leaf errors: nobody above failed
    # listeners get the failed nodes and the request's outcome
    assert done["2"].failed and not done["3"].failed and not done["1"].failed
    assert done["3"].errors == {leaf: 2} and done["1"].errors == {}
    stats = pipe.stats()
    assert stats["spans_failed"] == 4 + 2 + 2 and stats["spans_bad_error_fields"] == 0


def test_unknown_feature_value_is_refused(stored):
    store, _, done = stored
    with pytest.raises(ValueError, match="value must be one of"):
        store.features(done["1"].entry, value="cpu")


def _twice(t: int) -> list[dict]:
    """front calls api twice: the first api call fails on its own (its database call is fine), the second succeeds
    after handling its failed database call; front fails with the first call. At node level api and db both failed,
    yet no failed api span has a failed callee span: api's error is its own."""
    spans = [{"service": "front", "trace": t, "span": 1, "name": "GET /", "kind": SERVER, "start_ms": 0,
              "end_ms": 40, "error": True}]
    for k, (api_fails, db_fails) in enumerate(((True, False), (False, True))):
        base, at = 10 * (k + 1), 2 + 18 * k
        spans += [
            {"service": "front", "trace": t, "span": base, "parent": 1, "name": "call api", "kind": CLIENT,
             "start_ms": at, "end_ms": at + 16, "error": api_fails},
            {"service": "api", "trace": t, "span": base + 1, "parent": base, "name": "GET /api", "kind": SERVER,
             "start_ms": at + 1, "end_ms": at + 15, "error": api_fails},
            {"service": "api", "trace": t, "span": base + 2, "parent": base + 1, "name": "SELECT", "kind": CLIENT,
             "start_ms": at + 2, "end_ms": at + 3, "attrs": {"peer.service": "db"}, "error": db_fails},
        ]
    return spans


def _store_twice(store, t: int) -> str:
    pipe = Pipeline(store, PipelineConfig(background=False))
    completed = []
    pipe.add_listener(completed.append)
    pipe.accept(otlp_request(_twice(t)).SerializeToString())
    complete_all(pipe)
    pipe.close()
    return completed[0].trace_id


def _flags(store, trace_id: str) -> dict[str, tuple[bool, bool]]:
    return {n.split(":")[0] if not n.startswith("net:") else "call": (f.error, f.callee_error)
            for n, f in store.trace_features(trace_id).nodes.items()}


def test_callee_error_is_computed_from_the_spans_and_stored(stored):
    store, _, _ = stored
    flags = _flags(store, _store_twice(store, 9))
    # front failed with its failed call, the call with the failed api span under it; api failed on its own (its
    # only failed database call was under the api span that succeeded); the read-time derivation from the call
    # graph's node edges would blame db for api's error
    assert flags == {"front": (True, True), "call": (True, True), "api": (True, False), "db": (True, False)}


def test_a_sqlite_file_without_the_column_gets_it_on_open(tmp_path):
    import sqlite3

    store = open_store(tmp_path)
    old = _store_twice(store, 9)
    store.close()
    con = sqlite3.connect(tmp_path / "whyslow.sqlite3")  # an older file: trace_nodes without callee_error
    con.execute("ALTER TABLE trace_nodes DROP COLUMN callee_error")
    con.commit()
    con.close()
    store = open_store(tmp_path)
    try:
        # the old row: derived at read time from the call graph (node level), as before the column
        assert _flags(store, old)["api"] == (True, True)
        new = _store_twice(store, 10)
        assert _flags(store, new)["api"] == (True, False)   # stored with the features from now on
    finally:
        store.close()


def test_a_clickhouse_table_without_the_column_gets_it_on_open():
    from collector_processor.clickhouse_store import ClickHouseTraceStore
    from collector_processor.sql_executor import connect
    from tests.support.chdb import fresh_url

    url = fresh_url()
    store = ClickHouseTraceStore(connect(url))
    old = _store_twice(store, 9)
    store.ex.command(f"ALTER TABLE {store.t('traces')} DROP COLUMN callee_error")
    store.close()
    store = ClickHouseTraceStore(connect(url))
    try:
        assert _flags(store, old)["api"] == (True, True)   # the old row: derived at read time
        new = _store_twice(store, 10)
        assert _flags(store, new)["api"] == (True, False)
    finally:
        store.close()
