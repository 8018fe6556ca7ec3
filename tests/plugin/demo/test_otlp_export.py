"""Simulated requests become real OpenTelemetry SDK spans: one resource per service, exact timestamps, kinds,
parent links; export errors are reported, never silent."""

from __future__ import annotations

import socket

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from plugin.demo.otlp_export import CHUNK, ExportError, SpanSender, otlp_grpc_exporter
from plugin.demo.simulator import NS, SERVER, Simulator
from plugin.demo.site import retail_site

SITE = retail_site()


def _send(n=40, seed=1):
    exporter = InMemorySpanExporter()
    sender = SpanSender(SITE, exporter, seed=seed)
    traces = Simulator(SITE, seed=seed).generate(n, 1_700_000_000 * NS)
    ids = sender.record(traces)
    assert len(sender.pending()) == sum(len(t.spans()) for t in traces)
    sent = sender.flush()
    return exporter.get_finished_spans(), traces, ids, sender, sent


def test_spans_match_the_simulation_exactly():
    spans, traces, ids, sender, sent = _send()
    assert sent == len(spans) == sum(len(t.spans()) for t in traces) == sender.sent_spans
    assert sender.sent_traces == len(traces) == len(set(ids))
    by_trace = {}
    for s in spans:
        by_trace.setdefault(format(s.context.trace_id, "032x"), []).append(s)
    for tid, trace in zip(ids, traces, strict=True):
        got = by_trace[tid]
        expected = trace.spans()
        key = lambda s: (s.start_time, s.end_time, s.name)  # noqa: E731
        got_sorted = sorted(got, key=key)
        exp_sorted = sorted(expected, key=lambda s: (s.start_ns, s.end_ns, s.name))
        assert [(s.start_time, s.end_time, s.name) for s in got_sorted] == \
            [(s.start_ns, s.end_ns, s.name) for s in exp_sorted]
        for g, e in zip(got_sorted, exp_sorted, strict=True):
            assert g.resource.attributes["service.name"] == e.service
            assert g.kind == (SpanKind.SERVER if e.kind == SERVER else SpanKind.CLIENT)
            assert dict(g.attributes) == e.attributes
        span_ids = {s.context.span_id: s for s in got}
        roots = [s for s in got if s.parent is None]
        assert len(roots) == 1 and roots[0].name == SITE.service("website").operation
        for s in got:
            if s.parent is not None:
                parent = span_ids[s.parent.span_id]
                assert parent.start_time <= s.start_time and s.end_time <= parent.end_time
                if s.kind == SpanKind.SERVER:  # a server span's parent is its caller's client span
                    assert parent.kind == SpanKind.CLIENT
                    assert parent.attributes["peer.service"] == s.resource.attributes["service.name"]


def test_ids_are_reproducible_from_the_seed():
    _, _, a, _, _ = _send(seed=4)
    _, _, b, _, _ = _send(seed=4)
    _, _, c, _, _ = _send(seed=5)
    assert a == b and a != c


def test_flush_never_splits_a_trace_across_requests():
    class Recording(InMemorySpanExporter):
        def __init__(self):
            super().__init__()
            self.requests = []

        def export(self, spans):
            self.requests.append([s.context.trace_id for s in spans])
            return super().export(spans)

    exporter = Recording()
    sender = SpanSender(SITE, exporter, seed=2)
    sender.record(Simulator(SITE, seed=2).generate(400, 0))  # ~6,000 spans: several requests
    sender.flush()
    assert len(exporter.requests) >= 2
    seen = set()
    for request in exporter.requests:
        assert len(request) < CHUNK + 20
        assert not (set(request) & seen), "a trace was split across two export requests"
        seen |= set(request)
    assert len(seen) == 400


def test_refused_spans_raise_with_counts():
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = SpanSender(SITE, otlp_grpc_exporter(f"127.0.0.1:{port}", timeout_s=1.0), seed=1)
    sender.record(Simulator(SITE, seed=1).generate(3, 0))
    with pytest.raises(ExportError, match=r"did not accept \d+ of \d+ spans \(0 accepted so far\)"):
        sender.flush()
    sender.close()


def test_simulated_history_ends_near_now():
    """The demo's timestamps: a history as long as the arrivals take, ending a few seconds before now."""
    from plugin.demo.runner import DemoOptions, DemoRun

    now = 1_800_000_000 * NS
    exporter = InMemorySpanExporter()
    sender = SpanSender(SITE, exporter, seed=1)
    run = DemoRun(SITE, sender, client=None, options=DemoOptions(warmup_traces=400, fault_traces=10, rate=20.0,
                                                                   progress=False), clock=lambda: now)
    sent = run.send(400, None, "normal") + run.send(10, None, "more")
    starts = [t.start_ns for _, t in sent]
    assert starts == sorted(starts)
    assert now - 30 * NS < starts[0] < now - 10 * NS  # ~ (400 + 10) / 20 s + 5 s before now
    assert now - 10 * NS < max(t.root.end_ns for _, t in sent) < now + 1 * NS
    assert run.sent_traces == 410 == sender.sent_traces
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == 410
