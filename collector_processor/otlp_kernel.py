"""The numba kernel of :mod:`collector_processor.otlp_scan` (imported only when the compiled scan is built:
importing it loads numba and compiles, or loads from the on-disk cache, the functions below)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


def _jit(fn: Any) -> Any:
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except Exception:  # noqa: BLE001 - no writable cache directory: compile without caching
        return numba.njit(nogil=True)(fn)


@_jit
def varint(b, i, end):  # noqa: ANN001, ANN202 - numba kernels are typed by their arguments
    """(value, next position); next position -1 when truncated or longer than 10 bytes."""
    result = np.uint64(0)
    shift = 0
    while i < end and shift < 70:
        c = b[i]
        result |= np.uint64(c & 0x7F) << np.uint64(shift)
        i += 1
        if c < 0x80:
            return result, i
        shift += 7
    return result, -1


@_jit
def field(b, i, end):  # noqa: ANN001, ANN202
    """One field at i: (number, wire type, value for varint/fixed64, payload start, payload end / next i);
    number -1 when malformed or of a wire type a span never uses."""
    tag, i = varint(b, i, end)
    if i < 0:
        return -1, 0, np.uint64(0), 0, 0
    num = np.int64(tag >> np.uint64(3))
    wt = np.int64(tag & np.uint64(7))
    if wt == 0:
        v, j = varint(b, i, end)
        if j < 0:
            return -1, 0, np.uint64(0), 0, 0
        return num, wt, v, i, j
    if wt == 2:
        ln, j = varint(b, i, end)
        if j < 0 or ln > np.uint64(end - j):
            return -1, 0, np.uint64(0), 0, 0
        return num, wt, np.uint64(0), j, j + np.int64(ln)
    if wt == 1:
        if i + 8 > end:
            return -1, 0, np.uint64(0), 0, 0
        v = np.uint64(0)
        for k in range(8):
            v |= np.uint64(b[i + k]) << np.uint64(8 * k)
        return num, wt, v, i, i + 8
    if wt == 5:
        if i + 4 > end:
            return -1, 0, np.uint64(0), 0, 0
        return num, wt, np.uint64(0), i, i + 4
    return -1, 0, np.uint64(0), 0, 0


@_jit
def key_is(b, s, e, keys, offs, k):  # noqa: ANN001, ANN202
    n = offs[k + 1] - offs[k]
    if e - s != n:
        return False
    for t in range(n):
        if b[s + t] != keys[offs[k] + t]:
            return False
    return True


@_jit
def mix(h1, h2, b, s, e):  # noqa: ANN001, ANN202
    """Feed b[s:e] (length-prefixed) into the two hash lanes."""
    m1 = np.uint64(0x100000001B3)
    m2 = np.uint64(0x9E3779B97F4A7C15)
    n = np.uint64(e - s)
    h1 = (h1 ^ n) * m1
    h2 = (h2 + n) * m2
    h2 ^= h2 >> np.uint64(29)
    for t in range(s, e):
        c = np.uint64(b[t])
        h1 = (h1 ^ c) * m1
        h2 = (h2 + c + np.uint64(1)) * m2
        h2 ^= h2 >> np.uint64(31)
    return h1, h2


@_jit
def mix_int(h1, h2, v):  # noqa: ANN001, ANN202
    m1 = np.uint64(0x100000001B3)
    m2 = np.uint64(0x9E3779B97F4A7C15)
    for k in range(8):
        c = (np.uint64(v) >> np.uint64(8 * k)) & np.uint64(0xFF)
        h1 = (h1 ^ c) * m1
        h2 = (h2 + c + np.uint64(1)) * m2
        h2 ^= h2 >> np.uint64(31)
    return h1, h2


@_jit
def scan(b, n_spans, wanted, wanted_offs, status, status_offs, service_key, service_offs, exception, exception_offs, seed1, seed2):  # noqa: ANN001, ANN202
    """Columns of every span of the request, in the protobuf parser's order, after the number of spans seen
    (-1: irregular, the Python path must decode the request)."""
    tid = np.zeros((n_spans, 16), dtype=np.uint8)
    sid = np.zeros((n_spans, 8), dtype=np.uint8)
    pid = np.zeros((n_spans, 8), dtype=np.uint8)
    lens = np.zeros((n_spans, 3), dtype=np.int64)      # trace / span / parent id lengths
    kind = np.zeros(n_spans, dtype=np.int64)
    times = np.zeros((n_spans, 2), dtype=np.uint64)    # start, end
    hashes = np.zeros((n_spans, 2), dtype=np.uint64)   # type key hash (two lanes)
    code = np.full(n_spans, -1, dtype=np.int64)        # status code, -1: no status
    failed_attrs = np.zeros(n_spans, dtype=np.int64)   # HTTP 5xx / gRPC non-OK status attributes
    events = np.zeros(n_spans, dtype=np.int64)         # 0 none, 1 some, 2 an exception event
    where = np.zeros((n_spans, 3), dtype=np.int64)     # resource, scope, span index
    count = _fill(b, n_spans, wanted, wanted_offs, status, status_offs, service_key, service_offs, exception,
                  exception_offs, seed1, seed2, tid, sid, pid, lens, kind, times, hashes, code, failed_attrs, events, where)
    return count, tid, sid, pid, lens, kind, times, hashes, code, failed_attrs, events, where


@_jit
def _fill(b, n_spans, wanted, wanted_offs, status, status_offs, service_key, service_offs, exception, exception_offs, seed1, seed2,  # noqa: ANN001, ANN202, PLR0912, PLR0915
          tid, sid, pid, lens, kind, times, hashes, code, failed_attrs, events, where):
    """The scan itself: fills the columns, returns the number of spans or -1 (irregular)."""
    end = len(b)
    count = 0
    n_rs = 0
    i = 0
    while i < end:
        num, wt, _, ps, pe = field(b, i, end)
        if num < 0:
            return -1
        i = pe
        if num != 1:
            continue
        if wt != 2:
            return -1
        # ResourceSpans: first its resource's service.name (the first such attribute), then its spans
        sh1 = seed1
        sh2 = seed2
        found = False
        j = ps
        while j < pe:
            fn, fw, _, fs, fe = field(b, j, pe)
            if fn < 0 or (fn <= 2 and fw != 2):
                return -1
            j = fe
            if fn != 1 or found:
                continue
            a = fs
            while a < fe:
                an, aw, _, as_, ae = field(b, a, fe)
                if an < 0 or (an == 1 and aw != 2):
                    return -1
                a = ae
                if an != 1 or found:
                    continue
                # a KeyValue: canonical layout (key first, short) or irregular
                if ae - as_ < 2 or b[as_] != 0x0A or b[as_ + 1] >= 0x80 or as_ + 2 + b[as_ + 1] > ae:
                    return -1
                ks = as_ + 2
                ke = ks + b[as_ + 1]
                if key_is(b, ks, ke, service_key, service_offs, 0):
                    found = True
                    sh1, sh2 = mix(sh1, sh2, b, as_, ae)
        j = ps
        n_ss = 0
        while j < pe:
            fn, fw, _, fs, fe = field(b, j, pe)
            j = fe
            if fn != 2:
                continue
            k = fs
            n_sp = 0
            while k < fe:
                sn, sw, _, ss_, se = field(b, k, fe)
                if sn < 0 or (sn == 2 and sw != 2):
                    return -1
                k = se
                if sn != 2:
                    continue
                if count >= n_spans:
                    return -1
                c = count
                where[c, 0] = n_rs
                where[c, 1] = n_ss
                where[c, 2] = n_sp
                name_s = 0
                name_e = 0
                kd = np.int64(0)
                st_s = 0
                st_e = 0
                s = ss_
                while s < se:
                    f, w, v, vs, ve = field(b, s, se)
                    if f < 0:
                        return -1
                    s = ve
                    if f == 1 or f == 2 or f == 4:
                        if w != 2:
                            return -1
                        col = 0 if f == 1 else (1 if f == 2 else 2)
                        ln = ve - vs
                        lens[c, col] = ln
                        width = 16 if f == 1 else 8
                        for t in range(width):
                            val = b[vs + t] if t < ln else 0
                            if f == 1:
                                tid[c, t] = val
                            elif f == 2:
                                sid[c, t] = val
                            else:
                                pid[c, t] = val
                    elif f == 5:
                        if w != 2:
                            return -1
                        name_s = vs
                        name_e = ve
                    elif f == 6:
                        if w != 0:
                            return -1
                        lo = np.int64(v & np.uint64(0xFFFFFFFF))
                        kd = lo - (np.int64(1) << np.int64(32)) if lo >= (np.int64(1) << np.int64(31)) else lo
                    elif f == 7 or f == 8:
                        if w != 1:
                            return -1
                        times[c, f - 7] = v
                    elif f == 9 or f == 11:
                        if w != 2:
                            return -1
                    elif f == 15:
                        if w != 2:
                            return -1
                        st_s = vs
                        st_e = ve
                kind[c] = kd
                # the type key: (service, name) for INTERNAL and below, else also kind and naming attributes; one
                # more pass over the span's fields reads the attributes (call spans) and the events
                h1, h2 = mix(sh1, sh2, b, name_s, name_e)
                if kd > 1:
                    h1, h2 = mix_int(h1, h2, kd)
                fails = 0
                s = ss_
                while s < se:
                    f, w, v, vs, ve = field(b, s, se)
                    s = ve
                    if f == 9 and kd > 1:
                        if ve - vs < 2 or b[vs] != 0x0A or b[vs + 1] >= 0x80 or vs + 2 + b[vs + 1] > ve:
                            return -1
                        ks = vs + 2
                        ke = ks + b[vs + 1]
                        naming = False
                        for q in range(len(wanted_offs) - 1):
                            if key_is(b, ks, ke, wanted, wanted_offs, q):
                                naming = True
                                break
                        if naming:
                            h1, h2 = mix(h1, h2, b, vs, ve)
                            continue
                        for q in range(len(status_offs) - 1):
                            if key_is(b, ks, ke, status, status_offs, q):
                                # the value must be AnyValue{int_value} in canonical layout
                                if ke >= ve or b[ke] != 0x12:
                                    return -1
                                ln, p = varint(b, ke + 1, ve)
                                if p < 0 or p + np.int64(ln) != ve or ln < 2 or b[p] != 0x18:
                                    return -1
                                iv, p2 = varint(b, p + 1, ve)
                                if p2 != ve:
                                    return -1
                                val = np.int64(iv)
                                if q == len(status_offs) - 2:  # the last key is gRPC's
                                    if val != 0:
                                        fails += 1
                                elif val >= 500 and val <= 599:
                                    fails += 1
                                break
                    elif f == 11:  # is one event named "exception" (the first name field of each event)?
                        if events[c] == 0:
                            events[c] = 1
                        e = vs
                        while e < ve:
                            ef, ew, _, es, ee = field(b, e, ve)
                            if ef < 0:
                                return -1
                            e = ee
                            if ef == 2 and ew == 2:
                                if key_is(b, es, ee, exception, exception_offs, 0):
                                    events[c] = 2
                                break
                hashes[c, 0] = h1
                hashes[c, 1] = h2
                failed_attrs[c] = fails
                # status: code (last wins), -1 when absent or empty
                if st_e > st_s:
                    cd = np.int64(0)
                    s = st_s
                    while s < st_e:
                        f, w, v, vs, ve = field(b, s, st_e)
                        if f < 0:
                            return -1
                        s = ve
                        if f == 3 and w == 0:
                            cd = np.int64(v) if v < np.uint64(1 << 62) else np.int64(1 << 62)
                    code[c] = cd
                count += 1
                n_sp += 1
            n_ss += 1
        n_rs += 1
    return count
