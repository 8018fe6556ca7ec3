"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on grpcio.

The handler takes the raw request bytes (no generated-stub deserialisation) so the same bytes are parsed once
and spooled as they came. gzip request compression is handled by grpcio. Answers per the OTLP spec: OK with
``partial_success`` for rejected spans, INVALID_ARGUMENT for undecodable requests (not retryable),
UNAVAILABLE with a ``google.rpc.RetryInfo`` back-off when the pipeline is full or over its memory limit
(retryable; the Collector's exporter retries it and honours the delay). Refusals are ours and counted
(``requests_refused`` / ``spans_refused``): grpcio's own ``maximum_concurrent_rpcs`` answer
(RESOURCE_EXHAUSTED without RetryInfo, dropped by senders, invisible to us) is set far above what admission
control lets pile up.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector_processor.otlp_decode import DecodeFailure
from collector_processor.pipeline import Pipeline, PipelineFull
from collector_processor.tls import TlsFiles, bearer_ok

log = logging.getLogger("whyslow.collector.grpc")

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_OK = ExportTraceServiceResponse().SerializeToString()


def _split_address(address: str) -> str:
    if address.startswith(("http://", "https://")):
        address = address.split("://", 1)[1]
    return address


class OtlpGrpcReceiver:
    """gRPC OTLP trace receiver; ``start()``, ``stop(grace)``, ``port``.

    ``token``: every export must carry ``authorization: Bearer <token>`` metadata (else UNAUTHENTICATED,
    counted in ``requests_unauthenticated``); ``tls``: serve TLS with these PEM files."""

    def __init__(self, pipeline: Pipeline, address: str = "127.0.0.1:4317", token: str | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.pipeline = pipeline
        self.address = _split_address(address)
        self._token = token.encode() if token else None
        self._tls = tls
        cfg = pipeline.config
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.grpc_workers, thread_name_prefix="whyslow-otlp-grpc"),
            options=[
                ("grpc.max_receive_message_length", cfg.max_recv_bytes),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
            # admission control is ours (pipeline memory limiter + queue bound -> UNAVAILABLE with RetryInfo,
            # counted); grpcio's limit is only a far-off guard (see PipelineConfig.grpc_max_concurrent_rpcs)
            maximum_concurrent_rpcs=cfg.grpc_max_concurrent_rpcs or None,
        )
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(self._export),
        })
        self._server.add_generic_rpc_handlers((handler,))
        self.port = 0
        self._started = False

    def _export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self._token is not None:
            given = next((v for k, v in context.invocation_metadata() if k == "authorization"), None)
            if not bearer_ok(given if isinstance(given, str) else None, self._token):
                self.pipeline.count_request_error("requests_unauthenticated")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        try:
            batch = self.pipeline.accept(request)
        except DecodeFailure as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PipelineFull as exc:
            delay = Duration()
            delay.FromNanoseconds(int(exc.retry_after_s * 1e9))
            context.set_trailing_metadata((("google.rpc.retryinfo-bin",
                                            RetryInfo(retry_delay=delay).SerializeToString()),))
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Exception:  # never a traceback to the client; the request was not acknowledged
            log.exception("OTLP gRPC export failed")
            context.abort(grpc.StatusCode.INTERNAL, "internal error while accepting spans; nothing was stored")
        if not batch.rejected:
            return _OK
        resp = ExportTraceServiceResponse()
        resp.partial_success.rejected_spans = batch.rejected
        resp.partial_success.error_message = batch.error_message()
        return resp.SerializeToString()

    def start(self) -> OtlpGrpcReceiver:
        """Bind and serve (port 0 picks a free port, see ``.port``)."""
        if self._tls is not None:
            self.port = self._server.add_secure_port(self.address, self._tls.grpc_credentials())
        else:
            self.port = self._server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot bind the OTLP gRPC receiver to {self.address}")
        self._server.start()
        self._started = True
        log.info("OTLP gRPC receiver listening on %s (port %d%s%s)", self.address, self.port,
                 ", TLS" if self._tls else "", ", token required" if self._token else "")
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting; in-flight exports get ``grace`` seconds to finish."""
        if self._started:
            self._server.stop(grace).wait()
            self._started = False
