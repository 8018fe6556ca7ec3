"""plugin.demo.runner: the demo's steps against a real in-process server (spans over real OTLP/gRPC, answers
over REST): sending and accounting, waiting with timeouts, the verdict when nothing was detected."""

from __future__ import annotations

import io

import pytest

from plugin.config import ServeConfig
from plugin.demo.client import ApiError, RestClient
from plugin.demo.faults import resolve_fault
from plugin.demo.otlp_export import SpanSender, otlp_grpc_exporter
from plugin.demo.runner import DemoError, DemoOptions, DemoRun, _touches
from plugin.demo.simulator import Simulator
from plugin.demo.site import retail_site
from plugin.server import WhySlowServer

SITE = retail_site()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = ServeConfig(data_dir=str(tmp_path_factory.mktemp("runner")), otlp_grpc="127.0.0.1:0",
                         otlp_http="127.0.0.1:0", http="127.0.0.1:0", grpc="127.0.0.1:0", min_traces=2000,
                         trace_timeout_s=0.2).validate()
    with WhySlowServer(config) as srv:
        yield srv


@pytest.fixture
def demo(server):
    sender = SpanSender(SITE, otlp_grpc_exporter(server.url("otlp_grpc")), seed=3)
    out = io.StringIO()
    run = DemoRun(SITE, sender, RestClient(server.url("http")), DemoOptions(seed=3, progress=False, timeout_s=1.0),
                  out=out)
    yield run, out
    sender.close()


def test_touches_follows_the_spans_and_the_calls_of_a_trace() -> None:
    trace = Simulator(SITE, seed=1).generate(1, 0)[0]
    services = {s.service for s in trace.spans()} | {s.attributes.get("peer.service") for s in trace.spans()}
    for name in SITE.services:
        assert _touches(trace, name) == (name in services)
    assert _touches(trace, SITE.entry)


def test_sent_traffic_is_counted_processed_and_accounted_for(demo) -> None:
    run, _ = demo
    sent = run.send(25, None, "normal traffic")
    assert len(sent) == 25 and run.sent_traces == 25 and {i for i, _ in sent} <= run.sent_ids
    assert len({i for i, _ in sent}) == 25
    starts = [t.start_ns for _, t in sent]
    assert starts == sorted(starts) and run.sim_clock_ns == starts[-1]  # arrivals go on from the last one
    run.options.timeout_s = 30.0
    run.wait_processed("the traffic to be processed")
    counters = run.detector_counters()
    assert counters["traces"] >= 25 and counters["pending"] == 0
    assert run.span_accounting() == f"   All {run.sender.sent_spans:,} spans sent over OTLP were accepted by whyslow."


def test_waiting_ends_in_a_demo_error_that_says_what_it_waited_for(demo) -> None:
    run, _ = demo
    with pytest.raises(DemoError, match=r"timed out after 1 s waiting for the model to be fitted"):
        run.wait_model()  # min_traces is out of reach

    def unreachable() -> bool:
        raise ApiError("GET /api/v1/status failed: refused")

    with pytest.raises(DemoError, match="timed out waiting for the server: GET /api/v1/status failed"):
        run._wait("the server", unreachable, timeout_s=0.3)


def test_no_outlier_is_a_failed_verdict(demo) -> None:
    run, out = demo
    fault = resolve_fault(SITE, "caching-service")
    result = run.explain(fault)
    assert not result.passed and result.detected_faulty == 0 and result.explained == []
    assert result.verdict == "VERDICT: FAIL no outlier detected after injecting caching-service (Caching Service)"
    assert "3. whyslow flagged 0 slow requests as outliers" in out.getvalue()
