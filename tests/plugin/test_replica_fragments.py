"""A trace split across replicas (push mode, the collector's load balancer resharded while it was in flight):
two `whyslow serve` processes share one ClickHouse (chdb behind the development HTTP front); the OpenTelemetry
SDK's OTLP exporter sends each whole trace to the replica its trace id routes to, and the two halves of two
slow traces to different replicas, in both orders (the half holding the root stored first, and stored second).
Neither half is marked, explained or fitted on, both replicas report them incomplete and count them as
fragments, and every other slow trace is explained exactly once."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from collector_processor.clickhouse_store import ClickHouseTraceStore
from collector_processor.sql_executor import connect, parse_target
from plugin.demo.faults import resolve_fault
from plugin.demo.otlp_export import SpanSender, otlp_grpc_exporter
from plugin.demo.simulator import Simulator
from plugin.demo.site import retail_site
from tests.support.chdb import chdb_path, http_front_url
from tests.support.serve import ServeProcess, wait_until

N = 2
ENTRY = "website:GET /product/{id}"


class _Keep(SpanExporter):
    """Keeps the SDK's finished spans so that the test routes them to replicas itself."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):  # noqa: ANN001, ANN201 - the SDK's signature
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _tid(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def _halves(spans: list[ReadableSpan]) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """(the root with the spans still connected to it, a subtree of about half the trace without its parent):
    the first looks like a whole trace to the replica that gets it, the second has no root."""
    children: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        if s.parent is not None:
            children.setdefault(s.parent.span_id, []).append(s)

    def subtree(s: ReadableSpan) -> list[ReadableSpan]:
        out, todo = [], [s]
        while todo:
            x = todo.pop()
            out.append(x)
            todo.extend(children.get(x.context.span_id, []))
        return out

    cut = min((s for s in spans if s.parent is not None), key=lambda s: abs(len(subtree(s)) - len(spans) / 2))
    detached = {x.context.span_id for x in subtree(cut)}
    return [s for s in spans if s.context.span_id not in detached], [s for s in spans if s.context.span_id in detached]


def _send(replica: ServeProcess, spans: list[ReadableSpan]) -> None:
    exporter = otlp_grpc_exporter(replica.otlp_grpc)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


@pytest.mark.slow
def test_split_traces_are_neither_explained_nor_fitted_on(tmp_path):
    store_url = http_front_url()
    store = connect(f"chdb://{chdb_path()}?database={parse_target(store_url).database}")
    db = store.database
    replicas = [ServeProcess(tmp_path / f"r{i}", store=store_url, replica=f"{i}/{N}", min_traces=100,
                             trace_timeout_s=0.5, refit_interval_s=86400, log_level="info").start(timeout=90)
                for i in range(N)]
    site = retail_site()
    keep = _Keep()
    sender = SpanSender(site, keep, seed=5)
    sim = Simulator(site, seed=5, rate=20.0)
    slow = resolve_fault(site, "caching-service")

    def make(n: int, fault=None) -> dict[str, list[ReadableSpan]]:  # noqa: ANN001
        keep.spans = []
        sender.record(sim.generate(n, time.time_ns(), fault))
        sender.flush()
        out: dict[str, list[ReadableSpan]] = {}
        for s in keep.spans:
            out.setdefault(_tid(s), []).append(s)
        return out

    def route(traces: dict[str, list[ReadableSpan]]) -> None:  # as the loadbalancing exporter: by trace id
        for i, r in enumerate(replicas):
            spans = [s for t, group in traces.items() if int(t, 16) % N == i for s in group]
            if spans:
                _send(r, spans)

    def status(r: ServeProcess) -> dict:
        code, body = r.get("/api/v1/status")
        assert code == 200, body
        return body

    try:
        normal = make(120)
        split = make(2, slow)
        rooted_first, rootless_first = sorted(split)
        route(normal)
        # order 1 (rootless half stored first): replica 0 holds a rootless half until max_trace_wait_s passes
        y_root, y_rest = _halves(split[rootless_first])
        _send(replicas[0], y_rest)
        for r in replicas:  # the owner fits on both replicas' traces once they settled; the other adopts it
            r.wait_for(lambda r=r: any(m["state"] == "ready" for m in status(r)["models"]), timeout=150)
        wait_until(lambda: store.query(f"SELECT count() FROM {db}.trace_parts WHERE trace_id = "
                                       f"'{rootless_first}'")[0][0] == 1, timeout=60)
        # order 2 (rooted half stored first): its rootless half reaches the other replica at the same time
        x_root, x_rest = _halves(split[rooted_first])
        _send(replicas[0], x_root)
        _send(replicas[1], x_rest)
        _send(replicas[1], y_root)  # now the rooted half of the first one, to the other replica
        faulty = make(16, slow)
        route(faulty)
        # wait until every part is stored and every stored trace has settled on both replicas
        wait_until(lambda: store.query(f"SELECT uniqExact(trace_id, replica) FROM {db}.trace_parts WHERE trace_id "
                                       f"IN ('{rooted_first}', '{rootless_first}')")[0][0] == 4, timeout=90,
                   context=lambda: (store.query(f"SELECT * FROM {db}.trace_parts WHERE trace_id IN "
                                                f"('{rooted_first}', '{rootless_first}')"),
                                    [status(r)["pipeline"] for r in replicas]))
        wait_until(lambda: all(status(r)["replica"]["settling"] == 0 and status(r)["detector"]["pending"] == 0
                               for r in replicas), timeout=120)

        def explained() -> dict[str, int]:
            rows = store.query(f"SELECT trace_id, count() FROM {db}.explanations GROUP BY trace_id")
            return {str(t): int(c) for t, c in rows}

        done = explained()
        caught = set(faulty) & set(done)
        assert len(caught) >= len(faulty) // 2, (done, [status(r) for r in replicas])  # the fault is found
        assert max(done.values()) == 1  # every other slow trace explained exactly once, by one replica
        # neither half of either split trace is marked or explained, by either replica
        assert not set(split) & set(done)
        marked = {str(r[0]) for r in store.query(f"SELECT trace_id FROM {db}.outliers")}
        assert not set(split) & marked and caught <= marked
        # replica 1 stored the later part of both traces: it finds both split (on write, or once settled);
        # replica 0 finds x's rooted part split once settled, and y's rootless part only if y's other part arrived
        # before that part settled (it waited for the models: timing), else y's part had passed unscored
        # (incomplete). Both report both traces incomplete.
        counted = [status(r)["replica"]["fragments"] for r in replicas]
        assert counted[1] == 2 and counted[0] in (1, 2), counted
        for r in replicas:
            for trace_id in split:
                code, body = r.get(f"/api/v1/traces/{trace_id}/rca")
                assert code == 404 and "split across whyslow replicas" in body["error"], body
        assert {str(t) for (t,) in store.query(f"SELECT trace_id FROM {db}.fragments")} == set(split)
        # never fitted on: what a fit reads (the complete traces of the entry point) leaves them out
        fit_rows = ClickHouseTraceStore(store).features(ENTRY, complete_only=True)
        assert not set(split) & set(fit_rows.index) and set(normal) <= set(fit_rows.index)
    finally:
        for r in replicas:
            r.stop()
