"""Turn simulated requests into real OpenTelemetry spans and send them over OTLP/gRPC.

Each service of the site has its own ``TracerProvider`` whose resource carries its ``service.name``, as a
real deployment would. Spans are made with the OpenTelemetry SDK with explicit start and end timestamps and
SpanKind SERVER / CLIENT; one collecting span processor gathers the finished spans of all providers and
:meth:`SpanSender.flush` sends them with one ``OTLPSpanExporter`` (the exporter groups them by resource),
synchronously and in chunks, so that every span is either acknowledged by the receiver or reported.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator

from plugin.demo.simulator import CLIENT, SERVER, SimSpan, SimTrace
from plugin.demo.site import Site

SCOPE = "whyslow.demo"
CHUNK = 2000


class ExportError(RuntimeError):
    """The receiver did not accept spans."""


class SeededIdGenerator(IdGenerator):
    """Trace and span ids from a seeded generator, so that a demo run is reproducible."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def generate_span_id(self) -> int:
        with self._lock:
            return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        with self._lock:
            return self._rng.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return True


class _Collect(SpanProcessor):
    """Keeps every ended span until it is taken."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def take(self) -> list[ReadableSpan]:
        with self._lock:
            spans, self._spans = self._spans, []
        return spans


def otlp_grpc_exporter(endpoint: str, timeout_s: float = 10.0) -> SpanExporter:
    """The SDK's OTLP/gRPC span exporter to ``host:port`` without TLS (loopback demo)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=timeout_s)


class SpanSender:
    """Makes OpenTelemetry spans of simulated traces (one TracerProvider per service) and exports them."""

    def __init__(self, site: Site, exporter: SpanExporter, seed: int = 0, namespace: str = "retail-demo") -> None:
        self.site = site
        self.exporter = exporter
        self._collect = _Collect()
        ids = SeededIdGenerator(seed)
        self._tracers: dict[str, trace.Tracer] = {}
        self._providers: list[TracerProvider] = []
        for s in site.services.values():
            if s.is_db:
                continue
            provider = TracerProvider(
                resource=Resource.create(
                    {"service.name": s.name, "service.namespace": namespace, "deployment.environment": "demo"}
                ),
                id_generator=ids,
                shutdown_on_exit=False,
            )
            provider.add_span_processor(self._collect)
            self._providers.append(provider)
            self._tracers[s.name] = provider.get_tracer(SCOPE)
        self.sent_spans = 0
        self.sent_traces = 0

    def record(self, traces: Iterable[SimTrace]) -> list[str]:
        """Make the spans of ``traces`` (kept until :meth:`flush`); returns their trace ids (32 hex digits)."""
        ids = []
        for t in traces:
            root = self._emit(t.root, None)
            ids.append(format(root.get_span_context().trace_id, "032x"))
        return ids

    def _emit(self, s: SimSpan, parent: trace.Span | None) -> trace.Span:
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        kind = trace.SpanKind.SERVER if s.kind == SERVER else trace.SpanKind.CLIENT
        assert s.kind in (SERVER, CLIENT), s.kind
        span = self._tracers[s.service].start_span(
            s.name, context=ctx, kind=kind, attributes=s.attributes, start_time=s.start_ns
        )
        for child in s.children:
            self._emit(child, span)
        for name in s.events:
            span.add_event(name, {"exception.type": "ServiceUnavailable",
                                  "exception.message": f"{s.service} failed"}, timestamp=s.end_ns)
        if s.error:
            span.set_status(trace.Status(trace.StatusCode.ERROR))  # no message: the exception event has it
        span.end(end_time=s.end_ns)
        return span

    def pending(self) -> Sequence[ReadableSpan]:
        """Spans made but not yet exported (read-only view, for tests)."""
        spans = self._collect.take()
        for span in spans:
            self._collect.on_end(span)
        return spans

    def flush(self) -> int:
        """Export every pending span, whole traces per request (a trace is never split across requests, so the
        receiver sees it complete); returns how many spans were sent, raises :class:`ExportError` (with the
        count not accepted) when the receiver refuses a request."""
        spans = self._collect.take()
        by_trace: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            by_trace.setdefault(span.context.trace_id, []).append(span)
        sent = 0
        chunk: list[ReadableSpan] = []
        groups = list(by_trace.values())
        for i, group in enumerate(groups):
            chunk.extend(group)
            if len(chunk) >= CHUNK or i == len(groups) - 1:
                if self.exporter.export(chunk) is not SpanExportResult.SUCCESS:
                    raise ExportError(
                        f"the OTLP receiver did not accept {len(spans) - sent} of {len(spans)} spans "
                        f"({self.sent_spans + sent} accepted so far)"
                    )
                sent += len(chunk)
                chunk = []
        self.sent_spans += sent
        self.sent_traces += len(by_trace)
        return sent

    def close(self) -> None:
        for provider in self._providers:
            provider.shutdown()
        self.exporter.shutdown()
