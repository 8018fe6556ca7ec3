"""A small multi-service shop sending real OTLP through the OpenTelemetry SDK exporters (tests and the backend
benchmark use it to drive a live `whyslow serve` with controlled latencies).

    frontend  GET /checkout  (server)
      -> cart      GET /cart   (client -> server)
      -> payments  POST /pay   (client -> server)
           -> postgresql SELECT orders (db client span)

Spans carry explicit start/end times so a test controls every latency; `send(n, slow=...)` makes one
service slow (adds `slow_ms` to its own time) and returns the trace ids (32 hex) it sent.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

MS = 1_000_000
SERVICES = ("frontend", "cart", "payments", "fraud")  # fraud: only with fraud=True (a new dependency)
ENTRY = "frontend:GET /checkout"
HOME = "frontend:GET /home"
SPANS_PER_TRACE = 6  # frontend server, 2 client spans, cart server, payments server, db client


@dataclass
class Sent:
    trace_id: str
    start_unix_nano: int
    latency_ms: float


class ShopTraffic:
    """Real OTel SDK tracer providers (one per service) exporting over OTLP gRPC or HTTP."""

    def __init__(self, endpoint: str, protocol: str = "grpc", seed: int = 7, headers: dict[str, str] | None = None):
        self.rng = random.Random(seed)
        self.providers: dict[str, TracerProvider] = {}
        self.tracers = {}
        for service in SERVICES:
            exporter: SpanExporter
            if protocol == "grpc":
                exporter = GrpcExporter(endpoint=endpoint, insecure=True, headers=headers)
            else:
                exporter = HttpExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", headers=headers)
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            # a queue large enough that a test's burst is never dropped by the SDK
            provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 20,
                                                           max_export_batch_size=512, schedule_delay_millis=100))
            self.providers[service] = provider
            self.tracers[service] = provider.get_tracer("whyslow-tests")
        self.spans_sent = 0

    def _ms(self, median: float) -> float:
        return median * self.rng.lognormvariate(0.0, 0.15)

    def one(self, start: int, slow: str | None = None, slow_ms: float = 0.0, fraud: bool = False) -> Sent:
        extra = {s: (slow_ms if s == slow else 0.0) for s in (*SERVICES, "postgresql")}
        fe, cart, pay = self.tracers["frontend"], self.tracers["cart"], self.tracers["payments"]
        t = start
        root = fe.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=t)
        ctx = trace.set_span_in_context(root)
        t += int(self._ms(2.0) * MS)
        # cart call
        c1 = fe.start_span("GET /cart", kind=SpanKind.CLIENT, start_time=t, context=ctx,
                           attributes={"peer.service": "cart"})
        gap = int(self._ms(0.5) * MS)
        s1 = cart.start_span("GET /cart", kind=SpanKind.SERVER, start_time=t + gap,
                             context=trace.set_span_in_context(c1))
        cart_ms = self._ms(15.0) + extra["cart"]
        s1.end(end_time=t + gap + int(cart_ms * MS))
        t = t + gap + int(cart_ms * MS) + gap
        c1.end(end_time=t)
        t += int(self._ms(1.0) * MS)
        # payments call with a db query
        c2 = fe.start_span("POST /pay", kind=SpanKind.CLIENT, start_time=t, context=ctx,
                           attributes={"peer.service": "payments"})
        gap = int(self._ms(0.5) * MS)
        s2 = pay.start_span("POST /pay", kind=SpanKind.SERVER, start_time=t + gap,
                            context=trace.set_span_in_context(c2))
        u = t + gap + int((self._ms(8.0) + extra["payments"]) * MS)
        db = pay.start_span("SELECT orders", kind=SpanKind.CLIENT, start_time=u,
                            context=trace.set_span_in_context(s2),
                            attributes={"db.system": "postgresql", "db.name": "orders"})
        u += int((self._ms(10.0) + extra["postgresql"]) * MS)
        db.end(end_time=u)
        if fraud:  # a new dependency: payments -> fraud POST /check
            c3 = pay.start_span("POST /check", kind=SpanKind.CLIENT, start_time=u,
                                context=trace.set_span_in_context(s2), attributes={"peer.service": "fraud"})
            g3 = int(self._ms(0.5) * MS)
            s3 = self.tracers["fraud"].start_span("POST /check", kind=SpanKind.SERVER, start_time=u + g3,
                                                  context=trace.set_span_in_context(c3))
            v = u + g3 + int((self._ms(6.0) + extra["fraud"]) * MS)
            s3.end(end_time=v)
            u = v + g3
            c3.end(end_time=u)
            self.spans_sent += 2
        u += int(self._ms(2.0) * MS)
        s2.end(end_time=u)
        t = u + gap
        c2.end(end_time=t)
        t += int((self._ms(3.0) + extra["frontend"]) * MS)
        root.end(end_time=t)
        self.spans_sent += SPANS_PER_TRACE
        return Sent(format(root.get_span_context().trace_id, "032x"), start, (t - start) / MS)

    def home(self, start: int) -> Sent:
        """A second entry point (frontend GET /home, one span) used to show the learning state."""
        span = self.tracers["frontend"].start_span("GET /home", kind=SpanKind.SERVER, start_time=start)
        end = start + int(self._ms(5.0) * MS)
        span.end(end_time=end)
        self.spans_sent += 1
        return Sent(format(span.get_span_context().trace_id, "032x"), start, (end - start) / MS)

    def send_home(self, n: int, spacing_ms: float = 50.0) -> list[Sent]:
        start = time.time_ns() - int(n * spacing_ms * MS)
        out = [self.home(start + int(i * spacing_ms * MS)) for i in range(n)]
        self.flush()
        return out

    def send(self, n: int, slow: str | None = None, slow_ms: float = 300.0, start: int | None = None,
             spacing_ms: float = 50.0, fraud: bool = False) -> list[Sent]:
        start = time.time_ns() - int(n * spacing_ms * MS) if start is None else start
        out = [self.one(start + int(i * spacing_ms * MS), slow, slow_ms, fraud) for i in range(n)]
        self.flush()
        return out

    def flush(self) -> None:
        for provider in self.providers.values():
            provider.force_flush(10_000)

    def close(self) -> None:
        for provider in self.providers.values():
            provider.shutdown()
