"""A small multi-service app instrumented with the real OpenTelemetry SDK, with explicit span times so every
expected value is exact. Each service has its own TracerProvider and OTLP exporter (gRPC or HTTP, gzip)."""

from __future__ import annotations

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

MS = 1_000_000
SERVICES = ("frontend", "auth", "cart", "price", "stock")

# Expected values (ms) for one request of the app (see ShopApp.request)
ENTRY = "frontend:GET /checkout/{id}"
EXPECTED = {  # node -> (latency, own, gap, count)
    ENTRY: (100.0, 13.0, 0.0, 1),
    "net:auth:POST /login": (10.0, 2.0, 2.0, 1),
    "auth:POST /login": (8.0, 8.0, 0.0, 1),
    "net:cart:GET /cart": (36.0, 2.0, 2.0, 1),
    "cart:GET /cart": (34.0, 4.0, 0.0, 1),
    "redis:HGETALL cart": (14.0, 14.0, 0.0, 1),
    "net:price:price.Prices/Quote": (30.0, 4.0, 4.0, 1),
    "price:price.Prices/Quote": (26.0, 26.0, 0.0, 1),
    "net:stock:GET /stock/{sku}": (24.0, 6.0, 6.0, 3),
    "stock:GET /stock/{sku}": (18.0, 18.0, 0.0, 3),
    "frontend:render page": (17.0, 17.0, 0.0, 1),
}
CALL_EDGES = {
    (ENTRY, "net:auth:POST /login"), ("net:auth:POST /login", "auth:POST /login"),
    (ENTRY, "net:cart:GET /cart"), ("net:cart:GET /cart", "cart:GET /cart"),
    ("cart:GET /cart", "redis:HGETALL cart"), ("cart:GET /cart", "net:price:price.Prices/Quote"),
    ("net:price:price.Prices/Quote", "price:price.Prices/Quote"),
    (ENTRY, "net:stock:GET /stock/{sku}"), ("net:stock:GET /stock/{sku}", "stock:GET /stock/{sku}"),
    (ENTRY, "frontend:render page"),
}
STRUCTURE = {ENTRY: "sum", "cart:GET /cart": "max", "net:auth:POST /login": "sum", "net:cart:GET /cart": "sum",
             "net:price:price.Prices/Quote": "sum", "net:stock:GET /stock/{sku}": "sum"}
KINDS = {"redis:HGETALL cart": "db", "net:auth:POST /login": "call_gap", "auth:POST /login": "span"}


class ShopApp:
    """frontend (gRPC exporter, gzip) calls auth, cart (HTTP exporter, gzip) -> price (gRPC), cart -> redis,
    and stock three times (HTTP exporter, no compression)."""

    def __init__(self, grpc_port: int, http_port: int, batch: bool = True) -> None:
        self.providers: dict[str, TracerProvider] = {}
        for svc in SERVICES:
            if svc in ("frontend", "price"):
                exp = GrpcExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True,
                                   compression=grpc.Compression.Gzip, timeout=20)
            else:
                exp = HttpExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces", timeout=20,
                                   compression=HttpCompression.Gzip if svc != "stock" else HttpCompression.NoCompression)
            tp = TracerProvider(resource=Resource.create({"service.name": svc}))
            tp.add_span_processor(BatchSpanProcessor(exp, schedule_delay_millis=50) if batch else SimpleSpanProcessor(exp))
            self.providers[svc] = tp
        self.t = {svc: tp.get_tracer("shop") for svc, tp in self.providers.items()}

    def _span(self, svc, name, kind, parent, start, end, attrs=None, error=False):
        ctx = set_span_in_context(parent) if parent is not None else None
        sp = self.t[svc].start_span(name, context=ctx, kind=kind, start_time=start, attributes=attrs or {})
        return sp, end, error

    def request(self, t0: int, render: bool = True, auth_error: bool = False) -> str:
        """One checkout request starting at ``t0`` (ns); returns its trace id (hex)."""
        ms = lambda x: t0 + int(x * MS)  # noqa: E731
        opened = []

        def span(svc, name, kind, parent, a, b, attrs=None, error=False):
            sp, end, err = self._span(svc, name, kind, parent, ms(a), ms(b), attrs, error)
            opened.append((sp, end, err))
            return sp

        root = span("frontend", "GET /checkout/8812", SpanKind.SERVER, None, 0, 100,
                    {"http.route": "/checkout/{id}", "http.request.method": "GET"})
        c1 = span("frontend", "POST", SpanKind.CLIENT, root, 2, 12, {"http.request.method": "POST"})
        span("auth", "POST /login", SpanKind.SERVER, c1, 3, 11, {"http.route": "/login", "http.method": "POST"},
             error=auth_error)
        c2 = span("frontend", "GET", SpanKind.CLIENT, root, 14, 50)
        cart = span("cart", "GET /cart", SpanKind.SERVER, c2, 15, 49, {"http.route": "/cart", "http.method": "GET"})
        span("cart", "HGETALL cart", SpanKind.CLIENT, cart, 16, 30, {"db.system": "redis"})
        c3 = span("cart", "price.Prices/Quote", SpanKind.CLIENT, cart, 16, 46,
                  {"rpc.service": "price.Prices", "rpc.method": "Quote"})
        span("price", "price.Prices/Quote", SpanKind.SERVER, c3, 18, 44,
             {"rpc.service": "price.Prices", "rpc.method": "Quote"})
        for k, (a, b) in enumerate(((52, 60), (60, 68), (68, 76))):
            c = span("frontend", "GET", SpanKind.CLIENT, root, a, b)
            span("stock", f"GET /stock/{1000 + k}", SpanKind.SERVER, c, a + 1, b - 1,
                 {"http.route": "/stock/{sku}", "http.method": "GET"})
        if render:
            span("frontend", "render page", SpanKind.INTERNAL, root, 78, 95)
        for sp, end, err in reversed(opened):
            if err:
                sp.set_status(Status(StatusCode.ERROR, "boom"))
            sp.end(end_time=end)
        return format(root.get_span_context().trace_id, "032x")

    def flush(self) -> None:
        for tp in self.providers.values():
            assert tp.force_flush(20_000)

    def shutdown(self) -> None:
        for tp in self.providers.values():
            tp.shutdown()
