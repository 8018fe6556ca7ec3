"""Pull mode end to end: the demo's retail app writes its spans to ``otel_traces`` (the OpenTelemetry
Collector's ClickHouse exporter layout, in the real ClickHouse engine via chdb), `whyslow serve --source
clickhouse` reads them in lagged windows into a ClickHouse store, and the story ends as in push mode (OTLP
over gRPC into the SQLite default): the same outliers, explained with the slowed service on top."""

from __future__ import annotations

import io
import time

import pytest

from benchmarks.dev.otel_clickhouse import ClickHouseSpanExporter
from collector_processor.sql_executor import connect
from plugin.config import ServeConfig
from plugin.demo.client import RestClient
from plugin.demo.faults import resolve_fault
from plugin.demo.otlp_export import SpanSender, otlp_grpc_exporter
from plugin.demo.runner import DemoOptions, DemoRun
from plugin.demo.site import retail_site
from plugin.server import WhySlowServer
from tests.support.chdb import fresh_url

NS = 1_000_000_000
LAG_S = 8.0  # a batch of the demo's requests is stamped when sent and written within this lag
OPTIONS = DemoOptions(seed=3, warmup_traces=300, fault_traces=6, progress=False, timeout_s=90)


def _config(tmp_path, **kw) -> ServeConfig:
    return ServeConfig(data_dir=str(tmp_path), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0", http="127.0.0.1:0",
                       grpc="127.0.0.1:0", min_traces=OPTIONS.warmup_traces, window=2000,
                       refit_interval_s=24 * 3600.0, trace_timeout_s=0.5, log_level="warning", **kw).validate()


class _LiveDemo(DemoRun):
    """The demo with each batch of requests stamped at the wall clock when it is sent (not in the past, as the
    demo's history is): a pull-mode reader behind by a fixed lag sees them as a collector would write them."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        generate = self.sim.generate

        def live(n, start_ns, fault=None):
            return generate(n, max(start_ns, time.time_ns()), fault)

        self.sim.generate = live  # type: ignore[method-assign]


def _story(server: WhySlowServer, exporter, fault_name: str):
    site = retail_site()
    sender = SpanSender(site, exporter, seed=OPTIONS.seed)
    demo = _LiveDemo(site, sender, RestClient(server.url("http")), OPTIONS, out=io.StringIO())
    result = demo.run(resolve_fault(site, fault_name))
    outliers = {o["trace_id"] for o in RestClient(server.url("http")).outliers(limit=1000)}
    return result, outliers, demo


@pytest.mark.slow
def test_pull_mode_explains_like_push_mode(tmp_path):
    fault = "caching-service"
    # push: OTLP/gRPC into the default SQLite store
    with WhySlowServer(_config(tmp_path / "push")) as push:
        pushed, push_outliers, _ = _story(push, otlp_grpc_exporter(push.url("otlp_grpc")), fault)
    # pull: the same traffic through otel_traces, into the ClickHouse store
    otel_url = fresh_url()
    exporter = ClickHouseSpanExporter(connect(otel_url))  # kinds/status in both exporter spellings
    cfg = _config(tmp_path / "pull", store=fresh_url(), source="clickhouse", source_url=otel_url,
                  source_lag_s=LAG_S, source_window_s=60.0, source_backfill_s=60.0)
    with WhySlowServer(cfg) as pull:
        pulled, pull_outliers, demo = _story(pull, exporter, fault)
        stats = pull.source.stats()
        pipeline = pull.pipeline.stats()
        ids = {p["trace_id"] for p in pulled.explained}
        stored = [pull.results.explanation(t) for t in ids]
    assert pulled.passed, pulled.verdict
    assert pulled.top_services == pushed.top_services and set(pulled.top_services) == {"caching-service"}
    assert pull_outliers == push_outliers and len(pull_outliers) >= 1
    # every span the app made was read once, accepted and stored; nothing rejected or dropped
    assert stats["rows_read"] == exporter.rows == demo.sender.sent_spans == pipeline["spans_stored"]
    assert stats["rows_invalid"] == 0 and pipeline["spans_rejected"] == pipeline["spans_dropped"] == 0
    assert all(s is not None and s["entry"] == pulled.explained[0]["entry"] for s in stored)
