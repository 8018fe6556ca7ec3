"""OTLP ExportTraceServiceRequest -> validated span tuples, reading only the fields the pipeline needs.

Touching every attribute costs 2-4x the protobuf parse, so only spans whose kind makes them part of a
call (SERVER/CLIENT/PRODUCER/CONSUMER) have their attributes scanned, and only for a handful of keys.
A span is a plain tuple (indices below): one tuple per span is the only per-span Python object made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_processor.naming import UNKNOWN_SERVICE, operation_of

# span tuple layout
TID, SID, PID, SERVICE, OP, KIND, START, END, ERROR, PEER, PEER_KIND = range(11)

KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
STATUS_ERROR = 2
_ZERO16 = bytes(16)
_ZERO8 = bytes(8)

_WANTED = frozenset({
    "http.route", "http.method", "http.request.method", "rpc.service", "rpc.method",
    "peer.service", "db.system", "db.system.name", "db.name", "db.namespace", "messaging.system",
})


class DecodeFailure(ValueError):
    """The request body is not a decodable ExportTraceServiceRequest (HTTP 400 / gRPC INVALID_ARGUMENT)."""


@dataclass
class DecodedBatch:
    """Valid spans of one request, plus what was rejected and why (for OTLP partial success)."""

    spans: list[tuple] = field(default_factory=list)
    received: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    unknown_service: int = 0

    def error_message(self) -> str:
        if not self.rejected:
            return ""
        parts = ", ".join(f"{n} {why}" for why, n in self.reasons.most_common())
        return f"{self.rejected} of {self.received} spans rejected: {parts}"


def parse_request(payload: bytes) -> ExportTraceServiceRequest:
    """Parse protobuf bytes, raising DecodeFailure with a readable message."""
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(payload)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise DecodeFailure(f"request body is not a valid OTLP ExportTraceServiceRequest protobuf: {exc}") from None
    return req


class SpanDecoder:
    """Converts requests to span tuples; caches operation naming (regexes run once per distinct name)."""

    def __init__(self, max_name_len: int = 200, cache_size: int = 50_000) -> None:
        self.max_name_len = max_name_len
        self._cache: dict[tuple, str] = {}
        self._cache_size = cache_size

    def _op(self, key: tuple) -> str:
        op = self._cache.get(key)
        if op is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            op = operation_of(*key, max_len=self.max_name_len)
            self._cache[key] = op
        return op

    def decode(self, req: ExportTraceServiceRequest) -> DecodedBatch:
        out = DecodedBatch()
        spans = out.spans
        append = spans.append
        reasons = out.reasons
        op_cache = self._cache
        max_len = self.max_name_len
        for rs in req.resource_spans:
            service = None
            for kv in rs.resource.attributes:
                if kv.key == "service.name":
                    service = kv.value.string_value[:max_len]
                    break
            unknown = not service
            if unknown:
                service = UNKNOWN_SERVICE
            for ss in rs.scope_spans:
                n_before = len(spans)
                for sp in ss.spans:
                    tid = sp.trace_id
                    sid = sp.span_id
                    pid = sp.parent_span_id
                    start = sp.start_time_unix_nano
                    end = sp.end_time_unix_nano
                    if len(tid) != 16 or tid == _ZERO16:
                        reasons["invalid trace_id (must be 16 non-zero bytes)"] += 1
                        continue
                    if len(sid) != 8 or sid == _ZERO8:
                        reasons["invalid span_id (must be 8 non-zero bytes)"] += 1
                        continue
                    if pid:
                        if len(pid) != 8:
                            reasons["invalid parent_span_id (must be empty or 8 bytes)"] += 1
                            continue
                        if pid == _ZERO8:
                            pid = b""
                    if start <= 0 or end < start:
                        reasons["invalid timestamps (start missing or end before start)"] += 1
                        continue
                    kind = sp.kind
                    name = sp.name
                    peer = peer_kind = None
                    if kind == KIND_INTERNAL or kind == KIND_UNSPECIFIED:
                        key = (name, None, None, None, None)
                    else:
                        attrs = {}
                        for kv in sp.attributes:
                            k = kv.key
                            if k in _WANTED:
                                attrs[k] = kv.value.string_value[:max_len]
                        if attrs:
                            key = (name, attrs.get("http.route"),
                                   attrs.get("http.request.method") or attrs.get("http.method"),
                                   attrs.get("rpc.service"), attrs.get("rpc.method"))
                            if kind != KIND_SERVER and kind != KIND_CONSUMER:
                                peer, peer_kind = _peer_of(attrs, kind)
                        else:
                            key = (name, None, None, None, None)
                        if peer is None and kind == KIND_PRODUCER:
                            peer_kind = "messaging"
                    op = op_cache.get(key)
                    if op is None:
                        op = self._op(key)
                    append((tid, sid, pid, service, op, kind, start, end,
                            sp.status.code == STATUS_ERROR, peer, peer_kind))
                if unknown:
                    out.unknown_service += len(spans) - n_before
                out.received += len(ss.spans)
        out.rejected = out.received - len(spans)
        return out


def _peer_of(attrs: dict, kind: int) -> tuple[str | None, str | None]:
    """Peer name and leaf kind for a CLIENT/PRODUCER span that has no SERVER child."""
    msg = attrs.get("messaging.system")
    db = attrs.get("db.system") or attrs.get("db.system.name")
    dbname = attrs.get("db.name") or attrs.get("db.namespace")
    leaf_kind = "messaging" if (msg or kind == KIND_PRODUCER) else ("db" if (db or dbname) else None)
    peer = attrs.get("peer.service") or db or dbname or msg
    if peer and leaf_kind is None:
        leaf_kind = "db"
    return peer, leaf_kind
