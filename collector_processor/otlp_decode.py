"""OTLP ExportTraceServiceRequest bytes -> validated span tuples, reading only the fields the pipeline needs.

Requests are parsed with a lean wire-compatible schema (lean_proto.py): attributes arrive as raw bytes and
only the keys of a handful of attributes are looked at, only for spans whose kind makes them part of a call
(SERVER/CLIENT/PRODUCER/CONSUMER); attribute values are decoded only when a new combination is seen.
A span is a plain tuple (indices below): one tuple per span is the only per-span Python object made. Its
span type (service, operation) and, for CLIENT/PRODUCER spans that name their peer, its leaf type
(peer, operation, db|messaging) are interned to ints (see span_types.py), cached per distinct name and
attributes so the regexes run once per distinct name.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from collector_processor.lean_proto import LeanRequest, event_name, kv_key, kv_scalar, kv_string, status_code
from collector_processor.naming import UNKNOWN_SERVICE, operation_of
from collector_processor.otlp_scan import COMPILED, EXCEPTION, GRPC_STATUS_KEY, HTTP_STATUS_KEYS, WANTED_KEYS
from collector_processor.span_types import SpanTypes

# span tuple layout: trace id (16 bytes), span id (8 bytes), parent span id (8 bytes, zeros for a root),
# span type id, leaf type id (-1: none), kind, start, end (ns), error flag (see span_failed)
TID, SID, PID, TYPE, LEAF, KIND, START, END, ERROR = range(9)

KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
STATUS_UNSET, STATUS_OK, STATUS_ERROR = range(3)
_ZERO16 = bytes(16)
_MAX_TIME = 1 << 63  # times are int64 downstream
ZERO8 = bytes(8)

_WANTED = frozenset(WANTED_KEYS)
_ERROR_STATUS = b"\x18\x02"
_OK_STATUS = b"\x18\x01"
# status attributes of call spans: HTTP 5xx and gRPC non-OK are failures (the span status may be unset)
_HTTP_STATUS = frozenset(HTTP_STATUS_KEYS)
_GRPC_STATUS = GRPC_STATUS_KEY
_STATUS_KEYS = _HTTP_STATUS | {_GRPC_STATUS}
_EXCEPTION = EXCEPTION
# verdicts of status attributes, summed per span: a span has far fewer than BAD_ATTR status attributes, so the
# sum's remainder says whether one failed and its quotient how many were not numbers
FAILED_ATTR, BAD_ATTR = 1, 1 << 16
_VERDICTS = 4096  # remembered status attributes (cleared when full)


FUTURE_REASON = "timestamps too far in the future (sender clock ahead?)"


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
    failed: int = 0                 # spans whose outcome is an error (see span_failed)
    bad_error_fields: int = 0       # unknown status codes, non-numeric status attributes (read as no error)
    compiled: bool = False          # decoded by the compiled scan (otlp_scan.py), not span by span in Python

    def error_message(self) -> str:
        if not self.rejected:
            return ""
        parts = ", ".join(f"{n} {why}" for why, n in self.reasons.most_common())
        return f"{self.rejected} of {self.received} spans rejected: {parts}"


def parse_request(payload: bytes) -> Any:  # a LeanRequest (fields built at import)
    """Parse ExportTraceServiceRequest bytes (lean view), raising DecodeFailure with a readable message."""
    req = LeanRequest()
    try:
        req.ParseFromString(payload)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise DecodeFailure(f"request body is not a valid OTLP ExportTraceServiceRequest protobuf: {exc}") from None
    return req


def span_count(req: Any) -> int:
    """Spans in a parsed request (valid or not)."""
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def _service_of(rs: Any, max_len: int) -> str:
    """service.name of a ResourceSpans ('' when absent or not a string): the first such attribute."""
    for kv in rs.resource.attributes:
        if kv[2:14] == b"service.name" and kv_key(kv) == b"service.name":
            return kv_string(kv)[:max_len]
    return ""


_REASONS = ("invalid trace_id (must be 16 non-zero bytes)", "invalid span_id (must be 8 non-zero bytes)",
            "invalid parent_span_id (must be empty or 8 bytes)",
            "invalid timestamps (start missing or end before start)", FUTURE_REASON)


class SpanDecoder:
    """Converts requests to span tuples, interning span types in ``types``."""

    def __init__(self, types: SpanTypes | None = None, max_name_len: int = 200, cache_size: int = 100_000,
                 max_future_s: float = 3600.0, compiled: bool = True) -> None:
        self.types = types if types is not None else SpanTypes()
        self.max_name_len = max_name_len
        # a span starting more than this ahead of our clock is rejected: it would never age out of retention
        self.max_future_ns = int(max_future_s * 1e9)
        self._cache: dict[tuple, tuple[int, int]] = {}
        self._cache_size = cache_size
        self._verdicts: dict[bytes, int] = {}  # serialized status attribute -> _status_verdict
        # the compiled scan (otlp_scan.py), once built: type-key hash (first lane) -> (second lane, types);
        # the seeds are secret so that nobody can choose span names whose keys collide
        self.compiled = compiled
        self._hcache: dict[int, tuple[int, tuple[int, int]]] = {}
        self._seeds = tuple(np.uint64(int.from_bytes(os.urandom(8), "little")) for _ in range(2))
        if compiled:
            COMPILED.start()

    def _typed(self, key: tuple, service: str, raw_name: bytes, naming: list[bytes] | None,
               kind: int) -> tuple[int, int]:
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        # invalid UTF-8 becomes U+FFFD: the span is kept under a readable name, never rejected
        name = raw_name[: 4 * self.max_name_len].decode("utf-8", "replace")
        # the last value of a repeated key wins
        a = {kv_key(kv).decode("utf-8", "replace"): kv_string(kv)[: self.max_name_len] for kv in naming or ()}
        op = operation_of(name, a.get("http.route"), a.get("http.request.method") or a.get("http.method"),
                          a.get("rpc.service"), a.get("rpc.method"), max_len=self.max_name_len)
        type_id = self.types.intern(service, op)
        leaf_id = -1
        if kind == KIND_CLIENT or kind == KIND_PRODUCER:
            peer, leaf_kind = _peer_of(a, kind)
            if peer is not None and leaf_kind is not None:
                leaf_id = self.types.intern(peer, op, leaf_kind)
        out = (type_id, leaf_id)
        self._cache[key] = out
        return out

    def decode(self, req: Any, raw: bytes | None = None) -> DecodedBatch:  # req: a LeanRequest
        """The request's valid spans as tuples, and what was rejected. With the request's bytes (``raw``) and the
        compiled scan ready, columns are decoded in compiled code; otherwise (or for a request the scan calls
        irregular) span by span in Python. Both give the same result."""
        if raw is not None and self.compiled and COMPILED.scan is not None:
            fast = self._decode_columns(req, raw)
            if fast is not None:
                return fast
        out = DecodedBatch()
        spans = out.spans
        append = spans.append
        reasons = out.reasons
        cache = self._cache
        max_len = self.max_name_len
        wanted = _WANTED
        entry_ids = self.types.entry_ids
        latest = min(time.time_ns() + self.max_future_ns, _MAX_TIME)
        status_keys = _STATUS_KEYS
        verdict_of = self._verdicts.get
        for rs in req.resource_spans:
            service = _service_of(rs, max_len)
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
                    if len(sid) != 8 or sid == ZERO8:
                        reasons["invalid span_id (must be 8 non-zero bytes)"] += 1
                        continue
                    root = not pid
                    if root:
                        pid = ZERO8
                    elif len(pid) != 8:
                        reasons["invalid parent_span_id (must be empty or 8 bytes)"] += 1
                        continue
                    if start <= 0 or end < start or end >= latest:
                        if start > 0 and end >= start and end >= latest:
                            reasons[FUTURE_REASON] += 1
                        else:
                            reasons["invalid timestamps (start missing or end before start)"] += 1
                        continue
                    kind = sp.kind
                    name = sp.name
                    verdicts = 0  # status attributes: FAILED_ATTR / BAD_ATTR bits (see _status_verdict)
                    naming: list[bytes] | None = None  # the serialized attributes that name the span type
                    if kind <= KIND_INTERNAL:
                        key = (service, name)
                    else:
                        for kv in sp.attributes:
                            # key of a serialized KeyValue: b"\x0a" <len> <key>; a long key (len >= 0x80) can
                            # never slice into a wanted key; other layouts (or a truncated one) take kv_key
                            try:
                                k = kv[2:2 + kv[1]] if kv[0] == 10 else kv_key(kv)
                            except IndexError:
                                k = kv_key(kv)
                            if k in wanted:
                                if naming is None:
                                    naming = [kv]
                                else:
                                    naming.append(kv)
                            elif k in status_keys:
                                v = verdict_of(kv)
                                if v is None:
                                    v = self._status_verdict(k, kv)
                                verdicts += v
                        key = (service, name, kind, *naming) if naming else (service, name, kind)
                    typed = cache.get(key)
                    if typed is None:
                        typed = self._typed(key, service, name, naming, kind)
                    type_id = typed[0]
                    if root and type_id not in entry_ids:  # a new entry point: bounded (see SpanTypes)
                        type_id = self.types.entry(type_id)
                    st = sp.status
                    if st == _ERROR_STATUS:
                        err = True
                    elif not st and not verdicts and not sp.events:
                        err = False  # the common case: no status, status attributes (if any) fine, no events
                    else:
                        err = self._failed(st, verdicts, sp.events, out)
                    out.failed += err
                    append((tid, sid, pid, type_id, typed[1], kind, start, end, err))
                if unknown:
                    out.unknown_service += len(spans) - n_before
                out.received += len(ss.spans)
        out.rejected = out.received - len(spans)
        return out

    def _decode_columns(self, req: Any, raw: bytes) -> DecodedBatch | None:  # req: a LeanRequest
        """The compiled path of :meth:`decode`; None when the scan calls the request irregular."""
        n = span_count(req)
        if not n:
            return None
        (count, tid, sid, pid, lens, kind, times, hashes, code, fails, events,
         where) = COMPILED.scan(np.frombuffer(raw, dtype=np.uint8), n, *COMPILED.constants(), *self._seeds)
        if count != n:
            return None
        out = DecodedBatch(received=n, compiled=True)
        services = [_service_of(rs, self.max_name_len) for rs in req.resource_spans]
        # validation, in the Python path's order of checks
        start, end = times[:, 0], times[:, 1]
        id_len, span_len, parent_len = lens[:, 0], lens[:, 1], lens[:, 2]
        bad_tid = (id_len != 16) | ~tid.any(axis=1)
        bad_sid = ~bad_tid & ((span_len != 8) | ~sid.any(axis=1))
        root = parent_len == 0
        bad_pid = ~bad_tid & ~bad_sid & ~root & (parent_len != 8)
        ids_ok = ~(bad_tid | bad_sid | bad_pid)
        latest = np.uint64(min(time.time_ns() + self.max_future_ns, _MAX_TIME))
        bad_time = ids_ok & ((start == 0) | (end < start) | (end >= latest))
        future = bad_time & (start > 0) & (end >= start)
        valid = ids_ok & ~bad_time
        masks = (bad_tid, bad_sid, bad_pid, bad_time & ~future, future)
        firsts = sorted((int(m.argmax()), why, int(m.sum())) for m, why in zip(masks, _REASONS, strict=True)
                        if m.any())
        for _, why, k in firsts:  # a Counter in order of first occurrence, as span by span
            out.reasons[why] = k
        out.rejected = n - int(valid.sum())
        vi = np.flatnonzero(valid)
        if not len(vi):
            return out
        type_id, leaf_id = self._types_of(req, services, hashes[vi], where[vi], kind[vi])
        roots = root[vi]
        if roots.any():  # new entry points are bounded (see SpanTypes), in order of first appearance
            rt = type_id[roots]
            entry_ids = self.types.entry_ids
            uniq, first, counts = np.unique(rt, return_index=True, return_counts=True)
            order = np.argsort(first)
            new = [(t, k) for t, k in zip(uniq[order].tolist(), counts[order].tolist(), strict=True)
                   if t not in entry_ids]
            if new:
                remap = {t: self.types.entry(t, k) for t, k in new}
                type_id[roots] = [remap.get(t, t) for t in rt.tolist()]
        # the outcome (see _failed): status ERROR; else not status OK and (a failed status attribute or an
        # exception event); unknown status codes are counted and read as unset
        cd = code[vi]
        present = cd >= 0
        cd = np.where(present, cd, 0)
        bad_code = present & (cd > 2)
        err = (cd == 2) | ((cd != 1) & ((fails[vi] > 0) | (events[vi] == 2)))
        out.failed = int(err.sum())
        out.bad_error_fields = int(bad_code.sum())
        unknown = np.array([not s for s in services], dtype=bool)
        out.unknown_service = int(unknown[where[vi, 0]].sum())
        out.spans = list(zip(tid[vi].view("V16").ravel().tolist(), sid[vi].view("V8").ravel().tolist(),
                             pid[vi].view("V8").ravel().tolist(), type_id.tolist(), leaf_id.tolist(),
                             kind[vi].tolist(), start[vi].tolist(), end[vi].tolist(), err.tolist(), strict=True))
        return out

    def _types_of(self, req: Any, services: list[str], hashes: np.ndarray, where: np.ndarray,
                  kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(type id, leaf id) per span from its type-key hash: one cache lookup per distinct hash, the Python
        naming path for hashes not seen before (and for any span whose second hash lane disagrees)."""
        uniq, first, inv = np.unique(hashes[:, 0], return_index=True, return_inverse=True)
        second = np.empty(len(uniq), dtype=np.uint64)
        typed = np.empty((len(uniq), 2), dtype=np.int64)
        hcache = self._hcache
        u1, f1 = uniq.tolist(), first.tolist()
        for u in np.argsort(first).tolist():  # new types are interned in order of first appearance, as span by span
            h1, f = u1[u], f1[u]
            hit = hcache.get(h1)
            if hit is None:
                t = self._typed_span(req, services, where[f], int(kinds[f]))
                if len(hcache) >= self._cache_size:
                    hcache.clear()
                hit = hcache[h1] = (int(hashes[f, 1]), t)
            second[u] = hit[0]
            typed[u] = hit[1]
        out = typed[inv]
        for k in np.flatnonzero(hashes[:, 1] != second[inv]).tolist():  # 64-bit collisions: never in practice
            out[k] = self._typed_span(req, services, where[k], int(kinds[k]))
        return out[:, 0].copy(), out[:, 1].copy()

    def _typed_span(self, req: Any, services: list[str], at: np.ndarray, kind: int) -> tuple[int, int]:
        """(type id, leaf id) of one span by the Python path's key (see :meth:`decode`)."""
        i, j, k = (int(x) for x in at)
        sp = req.resource_spans[i].scope_spans[j].spans[k]
        service = services[i] or UNKNOWN_SERVICE
        name = sp.name
        naming = None
        if kind <= KIND_INTERNAL:
            key: tuple = (service, name)
        else:
            naming = [kv for kv in sp.attributes if kv_key(kv) in _WANTED] or None
            key = (service, name, kind, *naming) if naming else (service, name, kind)
        typed = self._cache.get(key)
        return typed if typed is not None else self._typed(key, service, name, naming, kind)

    def _status_verdict(self, key: bytes, kv: bytes) -> int:
        """What one status attribute says (0: no failure, FAILED_ATTR: HTTP 5xx / gRPC non-OK, BAD_ATTR: not a
        number), remembered per serialized attribute: the same few values repeat on every call span."""
        value = kv_scalar(kv)
        if isinstance(value, str):
            digits = value.strip()
            value = int(digits) if digits.isascii() and digits.isdigit() else None  # not "²": isdigit, no int
        if value is None:
            verdict = BAD_ATTR
        elif key == _GRPC_STATUS:
            verdict = FAILED_ATTR if value != 0 else 0
        else:
            verdict = FAILED_ATTR if 500 <= value <= 599 else 0
        if len(self._verdicts) >= _VERDICTS:
            self._verdicts.clear()
        self._verdicts[kv] = verdict
        return verdict

    @staticmethod
    def _failed(st: bytes, verdicts: int, events: Any, out: DecodedBatch) -> bool:
        """The outcome of a span: status ERROR, an ``exception`` event, HTTP 5xx or gRPC non-OK status
        attributes (``verdicts``: the sum of their :meth:`_status_verdict`), unless the status says OK (the
        application marked the span successful). Unknown status codes and status attributes that are not
        numbers are counted in ``out.bad_error_fields`` and read as no error; an error status needs no message."""
        code = STATUS_UNSET
        if st:
            code = status_code(st) if st != _OK_STATUS else STATUS_OK
            if code == STATUS_ERROR:
                return True
            if code not in (STATUS_UNSET, STATUS_OK):
                out.bad_error_fields += 1
                code = STATUS_UNSET
        if code == STATUS_OK:
            return False
        out.bad_error_fields += verdicts // BAD_ATTR
        return bool(verdicts % BAD_ATTR) or any(event_name(ev) == _EXCEPTION for ev in events)


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
