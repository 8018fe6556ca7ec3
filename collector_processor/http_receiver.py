"""OTLP/HTTP receiver: ``POST /v1/traces`` with application/x-protobuf or application/json bodies.

Server choice: the standard library's ThreadingHTTPServer (HTTP/1.1 keep-alive, one thread per connection).
OTLP exporters keep a few persistent connections and send large batches, so per-request server overhead is
small next to decoding; it adds no dependency and no WSGI layer between the socket and the bytes we parse.

Answers per the OTLP spec: 200 with ``ExportTraceServiceResponse`` (partial success when spans were rejected),
400 undecodable body, 404 other paths, 405 other methods, 411 no length, 413 body (or decompressed body) over
``max_recv_bytes``, 415 unsupported content type or encoding, 503 + Retry-After when the pipeline is full.
Error bodies are a ``google.rpc.Status`` in the request's encoding; responses use the request's content type.

Every refusal (413, 503) is answered only after the body has been read and discarded (bounded by
``_DRAIN_BYTES`` and ``_DRAIN_S``), and a connection closed with data still arriving lingers (half-closed,
bounded) before the socket goes: a client that writes its whole body before reading reads the answer
instead of a connection reset. Refused bodies are counted (``requests_refused``, ``spans_refused`` when the
drained body is small enough to count). The pipeline's memory limiter bounds the bodies being read.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_processor.otlp_decode import DecodeFailure
from collector_processor.otlp_json import message_to_json, parse_json_request
from collector_processor.pipeline import Pipeline, PipelineFull
from collector_processor.tls import TlsFiles, TlsPerConnection, bearer_ok

log = logging.getLogger("whyslow.collector.http")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
PATH = "/v1/traces"
_GRPC_INVALID_ARGUMENT, _GRPC_UNAVAILABLE, _GRPC_INTERNAL, _GRPC_UNIMPLEMENTED = 3, 14, 13, 12
_GRPC_UNAUTHENTICATED = 16
_DRAIN_S = 10.0            # at most this long reading a refused body before answering
_COUNT_BYTES = 4 << 20     # refused bodies up to this size are kept to count their spans
_LINGER_S = 2.0            # half-closed wait for a client still sending after the answer


class _TooLarge(Exception):
    def __init__(self, message: str, unread: bool = False) -> None:
        super().__init__(message)
        self.unread = unread  # the body is still to be read (announced length over the limit)


def _split_host_port(address: str) -> tuple[str, int]:
    if address.startswith(("http://", "https://")):
        address = address.split("://", 1)[1]
    address = address.rstrip("/")
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate gzip/deflate bodies without ever holding more than ``limit`` + 1 bytes (gzip-bomb safe)."""
    wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise DecodeFailure(f"body is not valid {encoding} data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not d.eof:
        raise DecodeFailure(f"{encoding} body is truncated")
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "whyslow-otlp"
    sys_version = ""  # do not advertise the Python version
    timeout = 30  # a stalled client cannot hold a thread forever
    pipeline: Pipeline  # set on the subclass made per receiver
    slots: threading.BoundedSemaphore
    token: bytes | None = None  # required bearer token
    _reserved = 0  # bytes of the memory limiter held for the body being read

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Requests the stdlib rejects before a do_* method (malformed request line, HTTP/2): counted, and an
        HTTP/2 client — a gRPC exporter pointed at this port — is told where to go."""
        self.pipeline.count_request_error("requests_invalid")
        now = time.monotonic()
        if code == 505 and "HTTP/2" in (getattr(self, "requestline", "") or "") and \
                now - getattr(self.server, "http2_warned_at", -60.0) >= 60.0:  # at most once a minute
            self.server.http2_warned_at = now  # type: ignore[attr-defined]
            log.warning("an HTTP/2 (gRPC?) client %s sent to the OTLP HTTP port; OTLP gRPC exporters go to the "
                        "OTLP gRPC receiver", self.address_string())
        super().send_error(code, message, explain)

    # ---- responses
    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _status(self, http_code: int, grpc_code: int, message: str, ctype: str = PROTOBUF,
                extra: dict[str, str] | None = None) -> None:
        st = Status(code=grpc_code, message=message)
        body = message_to_json(st) if ctype == JSON else st.SerializeToString()
        self._send(http_code, body, ctype, extra)

    def _drain(self, max_bytes: int, keep: int = 0) -> tuple[bool, bytes]:
        """Read and discard the request body (at most ``max_bytes`` bytes, ``_DRAIN_S`` seconds) so that the
        client, which writes it before reading, can read the answer. Returns (whole body read, the body when it
        is at most ``keep`` bytes, else b"")."""
        deadline = time.monotonic() + _DRAIN_S
        kept: list[bytes] = []
        total = 0
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                while total <= max_bytes and time.monotonic() < deadline:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass
                        return True, b"".join(kept) if total <= keep else b""
                    while size > 0 and time.monotonic() < deadline:
                        chunk = self.rfile.read(min(size, 1 << 16))
                        if not chunk:
                            return False, b""
                        size -= len(chunk)
                        total += len(chunk)
                        if total <= keep:
                            kept.append(chunk)
                    self.rfile.readline(1024)
                return False, b""
            n = int(self.headers.get("Content-Length") or 0)
            if n < 0 or n > max_bytes:
                return False, b""
            while total < n and time.monotonic() < deadline:
                chunk = self.rfile.read(min(n - total, 1 << 16))
                if not chunk:
                    return False, b""
                total += len(chunk)
                if n <= keep:
                    kept.append(chunk)
            return total == n, b"".join(kept)
        except (OSError, ValueError):
            return False, b""

    def _refuse_busy(self, ctype: str, message: str) -> None:
        """503 + Retry-After for a request refused before its body was read: drain, count, answer."""
        _, body = self._drain(self.pipeline.config.max_recv_bytes, keep=_COUNT_BYTES)
        if body and (self.headers.get("Content-Encoding") or "identity").strip().lower() != "identity":
            body = b""  # compressed: not worth inflating to count spans
        if body and ctype == JSON:
            try:
                body = parse_json_request(body).SerializeToString()
            except DecodeFailure:
                body = b""
        self.close_connection = True
        retry = str(max(1, math.ceil(self.pipeline.config.retry_after_s)))
        try:
            self.pipeline.refuse(body or None, message, new_request=True)
        except PipelineFull as exc:
            self._status(503, _GRPC_UNAVAILABLE, str(exc), ctype, {"Retry-After": retry})

    def _linger(self) -> None:
        """Half-close and read what the client still sends (bounded) so that closing does not reset the
        connection before the client has read the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + _LINGER_S
            left = 2 * self.pipeline.config.max_recv_bytes + (1 << 20)
            while left > 0 and time.monotonic() < deadline:
                got = self.connection.recv(1 << 16)
                if not got:
                    break
                left -= len(got)
        except OSError:
            pass

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > limit:
                    raise _TooLarge(f"body exceeds the limit of {limit} bytes")
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            raise LookupError("Content-Length required")
        n = int(length)
        if n < 0:
            raise ValueError("negative Content-Length")
        if n > limit:
            raise _TooLarge(f"body of {n} bytes exceeds the limit of {limit} bytes", unread=True)
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            raise DecodeFailure(f"body ended after {len(body)} of {n} bytes")
        return body

    # ---- methods
    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        limit = self.pipeline.config.max_recv_bytes
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if self.path.split("?", 1)[0] != PATH:
            self.close_connection = True
            self._status(404, _GRPC_UNIMPLEMENTED, f"unknown path {self.path[:100]!r}; OTLP traces go to {PATH}",
                         _reply_type(ctype))
            return
        if ctype not in (PROTOBUF, JSON):
            self.pipeline.count_request_error("requests_invalid")
            self.close_connection = True
            self._status(415, _GRPC_INVALID_ARGUMENT,
                         f"unsupported Content-Type {ctype!r}; use {PROTOBUF} or {JSON}", JSON)
            return
        if self.token is not None and not bearer_ok(self.headers.get("Authorization"), self.token):
            self.pipeline.count_request_error("requests_unauthenticated")
            self.close_connection = True
            self._drain(limit)
            self._status(401, _GRPC_UNAUTHENTICATED, "missing or invalid bearer token", _reply_type(ctype),
                         {"WWW-Authenticate": 'Bearer realm="whyslow"'})
            self._linger()
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            self.pipeline.count_request_error("requests_invalid")
            self.close_connection = True
            self._status(415, _GRPC_INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}; use gzip",
                         ctype)
            return
        if not self.slots.acquire(blocking=False):  # bounded: at most this many bodies in flight
            self._refuse_busy(ctype, "too many concurrent requests")
            self._linger()
            return
        try:
            announced = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            announced = 0
        self._reserved = announced if 0 < announced <= limit else 0
        try:
            if self._reserved and not self.pipeline.reserve_bytes(self._reserved):  # memory limiter
                self._reserved = 0
                self._refuse_busy(ctype, "memory limit reached")
                self._linger()
                return
            self._post(ctype, encoding, limit)
        finally:
            self._release()
            self.slots.release()

    def _release(self) -> None:
        if self._reserved:
            self.pipeline.release_bytes(self._reserved)
            self._reserved = 0

    def _post(self, ctype: str, encoding: str, limit: int) -> None:
        try:
            body = self._read_body(limit)
            if encoding != "identity":
                body = _decompress(body, encoding, limit)
        except _TooLarge as exc:
            self.pipeline.count_request_error("requests_too_large")
            self.close_connection = True
            if exc.unread:  # the client writes its body before reading: let it finish, then answer
                self._drain(limit)
            self._status(413, _GRPC_INVALID_ARGUMENT, str(exc), ctype)
            self._linger()
            return
        except LookupError as exc:
            self.pipeline.count_request_error("requests_invalid")
            self.close_connection = True
            self._status(411, _GRPC_INVALID_ARGUMENT, str(exc), ctype)
            return
        except DecodeFailure as exc:
            self.pipeline.count_request_error("requests_invalid")
            self._status(400, _GRPC_INVALID_ARGUMENT, str(exc), ctype)
            return
        except ValueError as exc:
            self.pipeline.count_request_error("requests_invalid")
            self.close_connection = True
            self._status(400, _GRPC_INVALID_ARGUMENT, f"malformed request: {exc}", ctype)
            return
        payload: bytes | ExportTraceServiceRequest
        if ctype == JSON:
            try:
                payload = parse_json_request(body)
            except DecodeFailure as exc:
                self.pipeline.count_request_error("requests_invalid")
                self._status(400, _GRPC_INVALID_ARGUMENT, str(exc), ctype)
                return
        else:
            payload = body
        self._release()  # accept() counts the bytes itself from here
        try:
            batch = self.pipeline.accept(payload)
        except DecodeFailure as exc:
            self._status(400, _GRPC_INVALID_ARGUMENT, str(exc), ctype)
            return
        except PipelineFull as exc:
            retry = str(max(1, math.ceil(exc.retry_after_s)))
            self._status(503, _GRPC_UNAVAILABLE, str(exc), ctype, {"Retry-After": retry})
            return
        except Exception:
            log.exception("OTLP HTTP export failed")
            self._status(500, _GRPC_INTERNAL, "internal error while accepting spans; nothing was stored", ctype)
            return
        resp = ExportTraceServiceResponse()
        if batch.rejected:
            resp.partial_success.rejected_spans = batch.rejected
            resp.partial_success.error_message = batch.error_message()
        self._send(200, message_to_json(resp) if ctype == JSON else resp.SerializeToString(), ctype)

    def _not_allowed(self) -> None:
        self.close_connection = True
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        self._status(405, _GRPC_UNIMPLEMENTED, f"method {self.command} not allowed; POST OTLP traces to {PATH}",
                     _reply_type(ctype), extra={"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815


class _Server(TlsPerConnection, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        # a client that went away mid-request: nothing to answer, no traceback on the console
        log.debug("OTLP HTTP connection from %s failed", client_address, exc_info=True)


class OtlpHttpReceiver:
    """HTTP OTLP trace receiver; ``start()``, ``stop(grace)``, ``port``.

    ``token``: every request must carry ``Authorization: Bearer <token>`` (else 401, counted in
    ``requests_unauthenticated``); ``tls``: serve HTTPS with these PEM files."""

    def __init__(self, pipeline: Pipeline, address: str = "127.0.0.1:4318", token: str | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.pipeline = pipeline
        self.host, self._want_port = _split_host_port(address)
        slots = threading.BoundedSemaphore(max(1, pipeline.config.grpc_workers * 4))
        handler = type("OtlpHandler", (_Handler,), {"pipeline": pipeline, "slots": slots,
                                                     "token": token.encode() if token else None})
        self._tls = tls
        self._handler = handler
        self.handler_token = token is not None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> OtlpHttpReceiver:
        """Bind and serve in a background thread (port 0 picks a free port, see ``.port``)."""
        self._server = _Server((self.host, self._want_port), self._handler)
        if self._tls is not None:
            try:
                self._server.tls_context = self._tls.server_context()
            except (OSError, ValueError):
                self._server.server_close()
                raise
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="whyslow-otlp-http", daemon=True)
        self._thread.start()
        log.info("OTLP HTTP%s receiver listening on %s:%d%s%s", "S" if self._tls else "", self.host, self.port,
                 PATH, " (token required)" if self.handler_token else "")
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting connections and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=grace or 1.0)
            self._server = None


def _reply_type(ctype: str) -> str:
    """Format of an error Status: the request's when it is an OTLP one, else JSON (readable, e.g. from curl)."""
    return PROTOBUF if ctype == PROTOBUF else JSON
