"""A compiled (numba) scan of OTLP ExportTraceServiceRequest bytes into span columns: the decoder's fast path.

Decoding spans one by one in Python costs ~3-4 µs per span, most of the collector's CPU. This module walks the
protobuf wire format of a whole request in compiled code (no Python object per span or attribute) and returns
columns: ids, kind, times, the error evidence (status code, HTTP/gRPC status attributes, ``exception`` events)
and a 128-bit keyed hash of everything that names the span's type (service, name, kind and the naming
attributes: the key :class:`~collector_processor.otlp_decode.SpanDecoder` caches types by). The decoder then
validates and resolves types column-wise, looking at one span per distinct type key only.

The scan reads the same fields by the same rules as the Python path; anything it does not model exactly (a
field with an unexpected wire type, a non-canonical attribute layout, a status attribute that is not an integer,
a malformed status or event) marks the request *irregular* and the decoder takes the Python path for it. The
request was already validated by the protobuf parser (upb), but every read here is still bounds-checked.

The kernel (otlp_kernel.py) is compiled in a background thread on first use (cached on disk where possible); until it is ready, or
where numba is missing or fails, the Python path serves every request.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

log = logging.getLogger("whyslow.collector.scan")

# the attribute keys the decoder looks at (see otlp_decode._WANTED and _STATUS_KEYS), packed for the kernel
WANTED_KEYS = (b"http.route", b"http.method", b"http.request.method", b"rpc.service", b"rpc.method",
               b"peer.service", b"db.system", b"db.system.name", b"db.name", b"db.namespace", b"messaging.system")
HTTP_STATUS_KEYS = (b"http.response.status_code", b"http.status_code")
GRPC_STATUS_KEY = b"rpc.grpc.status_code"  # the kernel takes the last status key for gRPC's
SERVICE_KEY = b"service.name"
EXCEPTION = b"exception"

def _pack(keys: tuple[bytes, ...]) -> tuple[np.ndarray, np.ndarray]:
    blob = b"".join(keys)
    offs = np.zeros(len(keys) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(k) for k in keys])
    return np.frombuffer(blob, dtype=np.uint8).copy(), offs


class _Compiled:
    """The compiled kernel, built once per process in a background thread."""

    def __init__(self) -> None:
        self.scan: Any = None
        self.failed = False
        self._started = False
        self._lock = threading.Lock()
        self.wanted = _pack(WANTED_KEYS)
        self.status = _pack((*HTTP_STATUS_KEYS, GRPC_STATUS_KEY))
        self.service = _pack((SERVICE_KEY,))
        self.exception = _pack((EXCEPTION,))

    def constants(self) -> tuple[np.ndarray, ...]:
        """The kernel's key tables, each as bytes + offsets: wanted keys, status keys, service.name, 'exception'."""
        return (*self.wanted, *self.status, *self.service, *self.exception)

    def start(self) -> None:
        """Compile in the background (once); the Python path serves requests meanwhile."""
        if os.environ.get("WHYSLOW_NO_COMPILED_DECODER"):
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._build, name="whyslow-decoder-compile", daemon=True).start()

    def build_now(self) -> bool:
        """Compile in this thread (tests, benchmarks); True when the kernel is usable."""
        with self._lock:
            self._started = True
        if self.scan is None and not self.failed:
            self._build()
        return self.scan is not None

    def _build(self) -> None:
        try:
            from collector_processor.otlp_kernel import scan
            probe = np.zeros(0, dtype=np.uint8)
            scan(probe, 0, *self.constants(), np.uint64(1), np.uint64(2))  # compiles (or loads the cache)
            self.scan = scan
            log.debug("compiled OTLP decoder ready")
        except Exception as exc:  # noqa: BLE001 - numba missing or failing: the Python decoder does the work
            self.failed = True
            log.warning("compiled OTLP decoder unavailable (%s); decoding in Python", exc)


COMPILED = _Compiled()
