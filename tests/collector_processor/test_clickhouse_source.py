"""Pull mode's reader: otel_traces rows (the ClickHouse exporter's layout, in chdb) -> OTLP -> the pipeline, in
lagged windows of whole traces; the cursor resumes after a restart; replicas split the traces by
cityHash64(TraceId) without overlap or gap; both exporter spellings; bad rows counted, not fatal."""

from __future__ import annotations

import time

import pytest

from benchmarks.dev.otel_clickhouse import COLUMNS, ClickHouseSpanExporter
from collector_processor import Pipeline, PipelineConfig, open_store
from collector_processor.clickhouse_source import (
    ClickHouseSource,
    FileCursor,
    SourceConfig,
    TableCursor,
    span_kind,
    status_code,
)
from collector_processor.sql_executor import connect, quote
from plugin.demo.otlp_export import SpanSender
from plugin.demo.simulator import Simulator
from plugin.demo.site import retail_site
from tests.support.chdb import fresh_url

NS = 1_000_000_000


@pytest.fixture(scope="module")
def otel():
    """otel_traces with 60 demo requests (mixed spellings) started 100-40 s ago; returns (executor, ids, spans)."""
    ex = connect(fresh_url())
    site = retail_site()
    exporter = ClickHouseSpanExporter(ex)
    sender = SpanSender(site, exporter, seed=5)
    ids = sender.record(Simulator(site, seed=5, rate=1.0).generate(60, time.time_ns() - 100 * NS))
    sender.flush()
    return ex, set(ids), exporter.rows


def _read(ex, tmp_path, name: str, **kw):
    store = open_store(tmp_path / name)
    pipeline = Pipeline(store, PipelineConfig(background=False))
    cfg = SourceConfig(lag_s=30.0, window_s=7.0, backfill_s=120.0, **kw)
    source = ClickHouseSource(pipeline, ex, FileCursor(tmp_path / f"{name}.cursor"), cfg)
    source.poll()
    pipeline.tick(time.monotonic() + 100)
    return source, pipeline, store


def test_windows_read_whole_traces_into_the_pipeline(otel, tmp_path):
    ex, ids, spans = otel
    source, pipeline, store = _read(ex, tmp_path, "a")
    stats, p = source.stats(), pipeline.stats()
    assert stats["rows_read"] == spans == p["spans_stored"] and stats["windows_read"] >= 15
    assert p["traces_stored"] == len(ids) and p["traces_incomplete"] == 0 and p["traces_reopened"] == 0
    assert 30 <= stats["cursor_lag_s"] < 45  # it stops lag_s behind now (plus the time the test took since)
    [entry] = store.entry_points()
    assert set(store.features(entry).index) == ids
    # the restarted reader resumes at its cursor: nothing is read twice
    again, pipeline2, _ = _read(ex, tmp_path, "a")
    assert again.stats()["rows_read"] == 0 and pipeline2.stats()["spans_received"] == 0


def test_replicas_split_the_traces(otel, tmp_path):
    ex, ids, spans = otel
    got = []
    for i in range(3):
        source, pipeline, store = _read(ex, tmp_path, f"r{i}", replica=i, replicas=3)
        got.append(set(store.features(store.entry_points()[0]).index) if store.entry_points() else set())
        assert pipeline.stats()["traces_incomplete"] == 0
    assert set().union(*got) == ids and sum(len(g) for g in got) == len(ids) and all(got)
    h = {r[0]: int(r[1]) for r in ex.query(
        f"SELECT DISTINCT TraceId, cityHash64(TraceId) % 3 FROM {ex.database}.otel_traces")}
    assert all(h[t] == i for i, g in enumerate(got) for t in g)


def test_spellings_and_bad_rows(tmp_path):
    assert [span_kind(k) for k in ("SPAN_KIND_SERVER", "Server", "Client", "SPAN_KIND_CONSUMER", "??")] == [2, 2, 3, 5, 0]
    assert [status_code(s) for s in ("STATUS_CODE_ERROR", "Error", "Ok", "STATUS_CODE_UNSET")] == [2, 2, 1, 0]
    ex = connect(fresh_url())
    exporter = ClickHouseSpanExporter(ex)
    good = (f"{7:032x}", f"{1:016x}")
    t = time.time_ns() - 60 * NS
    rows = [(f"{t // NS}.{t % NS:09d}", good[0], good[1], "", "", "GET /x", "Server", "svc", {}, "", "", {},
             1_000_000, "Error", "", [], [], [], [], [], [], []),
            (f"{t // NS}.{t % NS:09d}", "not-hex", good[1], "", "", "GET /x", "Server", "svc", {}, "", "", {},
             1_000_000, "Unset", "", [], [], [], [], [], [], [])]
    ex.insert(exporter.table, COLUMNS, rows)
    source, pipeline, store = _read(ex, tmp_path, "bad")
    assert source.stats()["rows_invalid"] == 1 and pipeline.stats()["spans_stored"] == 1
    tf = store.trace_features(good[0])
    assert tf is not None and tf.nodes["svc:GET /x"].error  # the exporter's "Error" status


def test_table_cursor_and_resharding():
    ex = connect(fresh_url())
    c0 = TableCursor(ex, "otel_traces", 0, 2)
    c1 = TableCursor(ex, "otel_traces", 1, 2)
    assert c0.load() is None
    c0.save(100)
    c1.save(200)
    c1.save(250)
    assert (c0.load(), c1.load()) == (100, 250)
    # three replicas now: a new share starts where the slowest replica of the source stopped
    assert TableCursor(ex, "otel_traces", 2, 3).load() == 100
    assert TableCursor(ex, "otel_traces", 2, 4).load() == 100
    TableCursor(ex, "otel_traces", 0, 3).save(300)
    assert TableCursor(ex, "otel_traces", 2, 3).load() == 100  # a replica of the same count: its own row
    assert TableCursor(ex, "other", 0, 1).load() is None
    assert ex.query(f"SELECT count() FROM {ex.database}.source_cursor WHERE source = {quote('otel_traces')}")


def test_config_is_validated():
    for bad in (dict(table="a.b.c"), dict(table="x;y"), dict(lag_s=0), dict(replica=2, replicas=2)):
        with pytest.raises(ValueError):
            SourceConfig(**bad).validate()
