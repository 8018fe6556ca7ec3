"""The compiled decoder (otlp_scan.py) against the Python decoder: the same spans, type ids and counters for every
request, valid, hostile or malformed; irregular requests are left to the Python path."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from benchmarks.collector_workload import make_requests
from collector_processor.lean_proto import LeanRequest
from collector_processor.otlp_decode import DecodeFailure, SpanDecoder, parse_request
from collector_processor.otlp_scan import COMPILED
from collector_processor.span_types import SpanTypes

pytestmark = pytest.mark.skipif(not COMPILED.build_now(), reason="numba is not available: no compiled decoder")


def _pair(max_types: int = 100_000, max_entries: int = 1_000) -> tuple[SpanDecoder, SpanDecoder]:
    return (SpanDecoder(SpanTypes(max_types, max_entries), compiled=False),
            SpanDecoder(SpanTypes(max_types, max_entries), compiled=True))


# the type bounds under test: new operations beyond max_types, new entry points beyond max_entries
BOUNDS = [(100_000, 1_000), (40, 1_000), (100_000, 6)]


def _named(dec: SpanDecoder, spans: list[tuple]) -> list[tuple]:
    """Spans with their type and leaf ids replaced by (service, operation, kind): ids are the order in which
    types were first seen, and the compiled path interns the ``{other}`` entry bucket after a request's types."""
    t = dec.types

    def name(i: int) -> tuple | None:
        return (t.service[i], t.operation[i], t.kind[i]) if i >= 0 else None

    return [(*sp[:3], name(sp[3]), name(sp[4]), *sp[5:]) for sp in spans]


def _compare(py: SpanDecoder, fast: SpanDecoder, raw: bytes) -> None:
    try:
        req = parse_request(raw)
    except DecodeFailure:
        return
    a = py.decode(req)
    b = fast.decode(parse_request(raw), raw)
    assert _named(fast, b.spans) == _named(py, a.spans)
    assert (b.received, b.rejected, b.failed, b.bad_error_fields, b.unknown_service) == \
        (a.received, a.rejected, a.failed, a.bad_error_fields, a.unknown_service)
    assert list(b.reasons.items()) == list(a.reasons.items())
    assert b.error_message() == a.error_message()
    ft, pt = fast.types, py.types
    assert set(zip(ft.service, ft.operation, ft.kind, strict=True)) == \
        set(zip(pt.service, pt.operation, pt.kind, strict=True))
    assert (ft.overflowed, ft.entries_overflowed) == (pt.overflowed, pt.entries_overflowed)
    assert len(ft.entry_ids) == len(pt.entry_ids)


def test_workload_requests_decode_identically_and_take_the_compiled_path() -> None:
    probe = SpanDecoder(SpanTypes(), compiled=True)
    py, fast = SpanDecoder(SpanTypes(), compiled=False), SpanDecoder(SpanTypes(), compiled=True)
    for raw in make_requests(40 * 512, 512, seed=3):
        assert probe._decode_columns(parse_request(raw), raw) is not None  # regular: no Python fallback
        _compare(py, fast, raw)


# --- hostile and malformed requests, built at the byte level with the lean schema (names may be invalid UTF-8)

def _kv(key: str, value: AnyValue | None) -> bytes:
    kv = KeyValue(key=key)
    if value is not None:
        kv.value.CopyFrom(value)
    return kv.SerializeToString()


_VALUES = st.one_of(
    st.none(),
    st.builds(lambda s: AnyValue(string_value=s), st.sampled_from(["GET", "/cart/{id}", "db1", "", "500", " 503 ",
                                                                    "x\u00e9", "²"])),
    st.builds(lambda i: AnyValue(int_value=i), st.sampled_from([0, 1, 2, 200, 404, 500, 503, 599, 600, -1, 2**62])),
    st.builds(lambda d: AnyValue(double_value=d), st.sampled_from([500.0, 0.5])),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
)
_KEYS = st.sampled_from(["http.route", "http.method", "http.request.method", "rpc.service", "rpc.method",
                         "peer.service", "db.system", "db.name", "db.namespace", "messaging.system",
                         "http.response.status_code", "http.status_code", "rpc.grpc.status_code", "url.full",
                         "service.name", "k" * 130, ""])
_ODD_KV = st.sampled_from([
    b"\x12\x05\x0a\x03GET\x0a\x0bhttp.method",        # value before key
    b"\x0a\x0bhttp.method",                            # no value
    b"",                                               # empty
    b"\x0a\x20http",                                   # truncated key
    b"\xff\xff",                                       # garbage
    b"\x0a\x19http.response.status_code\x12\x03\x18\xf4\x03\x08\x01",  # int status then a stray field
])


def _mostly(regular: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``odd`` one time in 25: most requests stay regular (the compiled path), some are not (the fallback)."""
    return st.integers(0, 24).flatmap(lambda k: odd if k == 0 else regular)


_INTS = st.builds(lambda i: AnyValue(int_value=i), st.sampled_from([0, 1, 2, 200, 404, 500, 503, 599, 600, -1,
                                                                    2**62]))
_ATTR = _mostly(st.one_of(
    st.builds(_kv, _KEYS.filter(lambda k: "status" not in k and 0 < len(k) < 128), _VALUES),
    st.builds(_kv, st.sampled_from(["http.response.status_code", "http.status_code", "rpc.grpc.status_code"]),
              _INTS)),
    st.one_of(st.builds(_kv, _KEYS, _VALUES), _ODD_KV))
_ID16 = _mostly(st.binary(min_size=16, max_size=16), st.sampled_from([b"", bytes(16), b"\x01" * 15, b"\x02" * 17]))
_ID8 = _mostly(st.binary(min_size=8, max_size=8), st.sampled_from([b"", bytes(8), b"\x01" * 7, b"\x03" * 9]))
_STATUS = _mostly(st.one_of(
    st.just(b""),
    st.builds(lambda c, m: Status(code=c, message=m).SerializeToString(), st.sampled_from([0, 1, 2, 5]),
              st.sampled_from(["", "boom"])),
    st.sampled_from([b"\x18\x02", b"\x18\x01", b"\x12\x04boom", b"\x18\x02\x18\x01"])),
    st.sampled_from([b"\x18", b"\xff"]))
_EVENT = _mostly(
    st.builds(lambda n: Span.Event(name=n, time_unix_nano=5).SerializeToString(),
              st.sampled_from(["exception", "log", ""])),
    st.sampled_from([b"\x12\x09exception\x12\x03log", b"\x09\x01", b"\xff"]))
NOW = 1_700_000_000_000_000_000


@st.composite
def _span(draw: st.DrawFn) -> dict:
    start = draw(_mostly(st.sampled_from([NOW, NOW + 10]), st.just(0)))
    end = draw(_mostly(st.sampled_from([start, start + 5_000_000]),
                       st.sampled_from([max(0, start - 1), 2**63 + 5, NOW + 10**18])))
    return dict(trace_id=draw(_ID16), span_id=draw(_ID8), parent_span_id=draw(st.just(b"") | _ID8),
                name=draw(st.sampled_from([b"GET /x", b"GET", b"", b"\xff\xfe bad utf-8", b"SELECT t"])),
                kind=draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, -1, 9])),
                start_time_unix_nano=start, end_time_unix_nano=end,
                attributes=draw(st.lists(_ATTR, max_size=6)), events=draw(st.lists(_EVENT, max_size=2)),
                status=draw(_STATUS))


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    req = LeanRequest()
    for _ in range(draw(st.integers(1, 3))):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(draw(st.lists(
            _mostly(st.builds(_kv, st.sampled_from(["service.name", "host.name"]), _VALUES), _ODD_KV), max_size=3)))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            for fields in draw(st.lists(_span(), max_size=6)):
                sp = ss.spans.add()
                attrs, events = fields.pop("attributes"), fields.pop("events")
                for k, v in fields.items():
                    setattr(sp, k, v)
                sp.attributes.extend(attrs)
                sp.events.extend(events)
    return req.SerializeToString()


@pytest.mark.parametrize("bounds", BOUNDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(_request(), min_size=1, max_size=4))
def test_random_requests_decode_identically(bounds: tuple[int, int], requests: list[bytes]) -> None:
    py, fast = _pair(*bounds)
    for raw in requests:
        _compare(py, fast, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_requests_decode_identically(data: st.DataObject) -> None:
    """Flipped bytes in a valid request: whatever the protobuf parser still accepts decodes the same both ways."""
    raw = bytearray(data.draw(_request()))
    for _ in range(data.draw(st.integers(1, 4))):
        if raw:
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    py, fast = _pair(40, 6)
    _compare(py, fast, bytes(raw))


def test_irregular_requests_fall_back_to_the_python_path() -> None:
    """A status attribute that is a string, or a key-value with its value first, is decoded in Python."""
    fast = SpanDecoder(SpanTypes(), compiled=True)
    for attr in (_kv("http.response.status_code", AnyValue(string_value="503")),
                 b"\x12\x05\x0a\x03GET\x0a\x0bhttp.method"):
        req = LeanRequest()
        sp = req.resource_spans.add().scope_spans.add().spans.add(
            trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=b"GET", kind=2, start_time_unix_nano=NOW,
            end_time_unix_nano=NOW + 5)
        sp.attributes.append(attr)
        raw = req.SerializeToString()
        assert fast._decode_columns(parse_request(raw), raw) is None
        out = fast.decode(parse_request(raw), raw)
        assert len(out.spans) == 1


def test_fixed64_times_are_read_little_endian() -> None:
    req = LeanRequest()
    req.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=b"x", start_time_unix_nano=NOW,
        end_time_unix_nano=NOW + 123_456_789)
    raw = req.SerializeToString()
    assert struct.pack("<Q", NOW) in raw
    out = SpanDecoder(SpanTypes(), compiled=True).decode(parse_request(raw), raw)
    assert out.spans[0][6:8] == (NOW, NOW + 123_456_789)
