"""Batch analysis: the split analyser gives the monolithic implementation's results bit for bit on varied
batches (call pairs, db/messaging leaves, catch-all roots, wrappers, orphans, cycles, second roots, clock skew,
ties, huge durations), for every option of the analyser."""

from __future__ import annotations

import dataclasses
from collections import Counter
from operator import itemgetter

import numpy as np
import pandas as pd
import pytest

from collector_processor.assembly import Assembled
from collector_processor.batch_analysis import BatchAnalyser
from collector_processor.naming import is_catch_all
from collector_processor.otlp_decode import (
    END,
    ERROR,
    KIND,
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    LEAF,
    PID,
    SID,
    START,
    TYPE,
    ZERO8,
)
from collector_processor.records import COUNT, ERR, FIRST, GAP, LAT, OWN, AnalysedBatch
from collector_processor.span_types import SpanTypes

SERVICES = ["web", "api", "db-api", "auth", "cart"]
OPERATIONS = ["GET /a", "GET /b", "POST /c", "work", "/*", "GET /"]
PEERS = [("postgres", "SELECT", "db"), ("redis", "GET", "db"), ("kafka", "publish", "messaging")]


def _span_type(rng: np.random.Generator, types: SpanTypes, service: str, kind: int) -> tuple[int, int]:
    """(type, leaf type) of a span: callers sometimes name a db/messaging peer."""
    typ = types.intern(service, str(rng.choice(OPERATIONS)), "span")
    leaf = -1
    if kind in (KIND_CLIENT, KIND_PRODUCER) and rng.random() < 0.5:
        peer, op, leaf_kind = PEERS[int(rng.integers(len(PEERS)))]
        leaf = types.intern(peer, op, leaf_kind)
    return typ, leaf


def _trace(rng: np.random.Generator, types: SpanTypes, k: int, huge: bool) -> Assembled:
    """One random trace: a tree of spans whose kinds mostly follow caller -> callee, then perturbed."""
    n = int(rng.integers(1, 25))
    unit = int(rng.choice([1, 1000, 1_000_000]))
    grid = int(rng.choice([3, 10, 1000]))  # a coarse grid makes equal start times (ties) common
    sids = [(i + 1).to_bytes(8, "big") for i in range(n)]  # span ids repeat across traces
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, n)]
    service = [str(rng.choice(SERVICES))]
    kind = [int(rng.choice([KIND_SERVER, KIND_INTERNAL, KIND_CONSUMER, 0]))]
    t0 = int(rng.integers(1, 10**6)) * unit
    top = (2**61 if huge else grid * unit * 50)
    start, end = [t0], [t0 + int(rng.integers(0, top // unit + 1)) * unit]
    for i in range(1, n):
        p = parent[i]
        pk = kind[p]
        if pk in (KIND_CLIENT, KIND_PRODUCER) and rng.random() < 0.8:
            kind.append(KIND_SERVER if pk == KIND_CLIENT else KIND_CONSUMER)
            service.append(str(rng.choice(SERVICES)))
        else:
            kind.append(int(rng.choice([KIND_CLIENT, KIND_CLIENT, KIND_PRODUCER, KIND_INTERNAL, 0, KIND_SERVER])))
            service.append(service[p] if rng.random() < 0.8 else str(rng.choice(SERVICES)))
        ps, pe = start[p], end[p]
        s = ps + int(rng.integers(0, (pe - ps) // unit + 1)) * unit
        e = s + int(rng.integers(0, (pe - s) // unit + 1)) * unit
        if rng.random() < 0.1:  # clock skew: the child sticks out of its parent
            s -= int(rng.integers(1, grid + 1)) * unit
        if rng.random() < 0.1:
            e += int(rng.integers(1, grid + 1)) * unit
        start.append(max(s, 1))
        end.append(e)
    if rng.random() < 0.4:  # a wrapper: a childless INTERNAL sibling of the same service around a span
        j = int(rng.integers(0, n))
        if parent[j] >= 0:
            slack = int(rng.integers(0, grid + 1)) * unit
            parent.append(parent[j])
            service.append(service[j])
            kind.append(int(rng.choice([KIND_INTERNAL, 0])))
            start.append(max(1, start[j] - slack + int(rng.integers(0, 2)) * unit * 2))
            end.append(max(start[-1], end[j] + slack - int(rng.integers(0, 2)) * unit))  # decoded: end >= start
            sids.append((len(sids) + 1).to_bytes(8, "big"))
            n += 1
    pid = [ZERO8 if p < 0 else sids[p] for p in parent]
    absent = lambda i: (10_000 + i).to_bytes(8, "big")  # noqa: E731 - a parent that never arrived
    if n > 1 and rng.random() < 0.15:  # orphan
        pid[int(rng.integers(1, n))] = absent(1)
    if n > 1 and rng.random() < 0.1:  # a second parentless span
        pid[int(rng.integers(1, n))] = ZERO8
    if rng.random() < 0.07:  # no root at all
        pid[0] = absent(2)
    if n > 2 and rng.random() < 0.1:  # a parent cycle (or a span that is its own parent)
        i, j = (int(x) for x in rng.choice(np.arange(1, n), size=2))
        pid[i], pid[j] = sids[j], sids[i]
    spans = []
    for i in range(n):
        typ, leaf = _span_type(rng, types, service[i], kind[i])
        spans.append((k.to_bytes(16, "big"), sids[i], pid[i], typ, leaf, kind[i], start[i], end[i],
                      bool(rng.random() < 0.1)))
    order = rng.permutation(n)  # arrival order
    return Assembled(k.to_bytes(16, "big"), [spans[i] for i in order], bool(rng.random() < 0.85), False, False,
                     set())


def _batch(seed: int, n_traces: int, huge: bool = False) -> tuple[list[Assembled], SpanTypes, SpanTypes]:
    """A batch and two identical span-type registries (the analysers intern catch-all names into them)."""
    rng = np.random.default_rng(seed)
    a = SpanTypes()
    done = [_trace(rng, a, k, huge and rng.random() < 0.5) for k in range(n_traces)]
    return done, a, _copy(a)


def _copy(types: SpanTypes) -> SpanTypes:
    copy = SpanTypes()
    for key in zip(types.service, types.operation, types.kind, strict=True):
        copy.intern(*key)
    return copy


def _assert_identical(new: AnalysedBatch, old: AnalysedBatch) -> None:
    for f in dataclasses.fields(AnalysedBatch):
        x, y = getattr(new, f.name), getattr(old, f.name)
        assert type(x) is type(y), f.name
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f.name
        elif isinstance(x, dict):
            assert list(x.items()) == list(y.items()), f.name
        else:
            assert x == y, f.name


OPTIONS = [
    {},
    {"overlap_fraction": 0.0, "wrapper_slack": 0.2},
    {"overlap_fraction": 0.5, "qualify_catch_all_root": False},
    {"reparent_wrappers": False},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_split_analyser_matches_the_monolithic_one(options: dict) -> None:
    for seed in range(12):
        done, types_new, types_old = _batch(seed, n_traces=[1, 7, 40, 120][seed % 4], huge=seed % 6 == 5)
        new_an, old_an = BatchAnalyser(types_new, **options), BatchAnalyser(types_old, **options)
        for part in (done[: len(done) // 2], done[len(done) // 2:], done):  # the name caches carry over
            if not part:
                continue
            ref_types = _copy(types_new)
            new = new_an.analyse(part)
            _assert_identical(new, _legacy_analyse(old_an, part))
            _assert_identical(new, _reference_analyse(part, ref_types, **options))
            assert ref_types.operation == types_new.operation
            assert (types_new.service, types_new.operation, types_new.kind) == \
                   (types_old.service, types_old.operation, types_old.kind)


# ---- an independent reference: the documented rules, trace by trace, in plain Python


def _tightest_wrappers(spans: list[tuple], parent: list[int], child: list[bool], types: SpanTypes,
                       slack: float) -> dict[int, int]:
    """Adopted span -> its wrapper (``reparent_wrappers``), by trying every pair of siblings."""
    def sibling(i: int) -> bool:
        return child[i] and spans[i][KIND] not in (KIND_SERVER, KIND_CONSUMER)

    n = len(spans)
    has_kids = {parent[i] for i in range(n) if child[i]}
    service = [types.service[sp[TYPE]] for sp in spans]
    best: dict[int, tuple[int, int, int]] = {}
    for a in range(n):
        if not sibling(a) or a in has_kids or spans[a][KIND] > KIND_INTERNAL:
            continue
        sa, ea = spans[a][START], spans[a][END]
        for b in range(n):
            if b == a or not sibling(b) or parent[b] != parent[a] or service[b] != service[a]:
                continue
            sb, eb = spans[b][START], spans[b][END]
            outside = max(0, sa - sb) + max(0, eb - ea)
            longer = (ea - sa > eb - sb) or (ea - sa == eb - sb and a < b)
            if longer and outside <= slack * (eb - sb):
                key = (ea - sa, -sa, a)
                if b not in best or key < best[b]:
                    best[b] = key
    return {b: key[2] for b, key in best.items()}


def _reference_analyse(done: list[Assembled], types: SpanTypes, overlap_fraction: float = 0.1,
                       qualify_catch_all_root: bool = True, reparent_wrappers: bool = True,
                       wrapper_slack: float = 0.05) -> AnalysedBatch:
    def name(code: int) -> str:
        t, call = divmod(code, 2)
        return f"net:{types.service[t]}:{types.operation[t]}" if call else f"{types.service[t]}:{types.operation[t]}"

    callers, callees = (KIND_CLIENT, KIND_PRODUCER), (KIND_SERVER, KIND_CONSUMER)
    catch_all = [is_catch_all(op) for op in types.operation]
    per_trace = []
    orphans = cycles = skewed = reparented = 0
    for a in done:
        spans = a.spans
        n = len(spans)
        pos = {sp[SID]: i for i, sp in enumerate(spans)}
        parent = [pos.get(sp[PID], -1) for sp in spans]
        linked = [sp[PID] != ZERO8 for sp in spans]
        rank = [0 if not linked[i] else (1 if parent[i] < 0 else 2) for i in range(n)]
        root = min(range(n), key=lambda i: (rank[i], spans[i][START], -spans[i][END], i))
        reach = [False] * n
        for i in range(n):  # climb to the root, a top or a repeat
            cur, seen = i, set()
            while cur != root and parent[cur] >= 0 and cur not in seen:
                seen.add(cur)
                cur = parent[cur]
            reach[i] = cur == root
            if not reach[i]:
                if parent[cur] < 0:
                    orphans += 1
                else:
                    cycles += 1
        complete = a.complete and not all(linked) and all(reach)
        child = [reach[i] and parent[i] >= 0 and i != root for i in range(n)]
        adopted = _tightest_wrappers(spans, parent, child, types, wrapper_slack) if reparent_wrappers else {}
        reparented += len(adopted)
        for b, w in adopted.items():
            parent[b] = w
        kids: dict[int, list[int]] = {}
        for i in range(n):
            if child[i]:
                kids.setdefault(parent[i], []).append(i)
        code = []
        for i, sp in enumerate(spans):
            called = [c for c in kids.get(i, []) if spans[c][KIND] in callees] if sp[KIND] in callers else []
            if called:
                first = min(called, key=lambda c: (spans[c][START], c))
                code.append(spans[first][TYPE] * 2 + 1)
            elif sp[KIND] in callers and sp[LEAF] >= 0:
                code.append(sp[LEAF] * 2)
            else:
                code.append(sp[TYPE] * 2)
        rt = spans[root][TYPE]
        if qualify_catch_all_root and catch_all[rt]:
            reached = [i for i in range(n) if reach[i] and spans[i][KIND] in callees
                       and types.service[spans[i][TYPE]] != types.service[rt]]
            if reached:
                first = min(reached, key=lambda i: (spans[i][START], i))
                op = f"{types.operation[rt]} -> {types.operation[spans[first][TYPE]]}"
                code[root] = types.intern(types.service[rt], op) * 2
        # own time, skew and sibling structure from each span's children clipped to it, by start
        own = [float(sp[END] - sp[START]) for sp in spans]
        parallel, sequential, edges = Counter(), Counter(), set()
        for p, cs in kids.items():
            ps, pe = spans[p][START], spans[p][END]
            iv = sorted((min(max(spans[c][START], ps), pe), c) for c in cs)
            busy, running, prev_dur = 0.0, None, None
            for k, (s, c) in enumerate(iv):
                e = min(max(spans[c][END], ps), pe)
                skewed += (spans[c][START] < ps or spans[c][END] > pe) and c not in adopted
                edges.add((code[p], code[c]))
                if k:
                    overlap = float(running - s)
                    if overlap > 0 and overlap > overlap_fraction * min(float(e - s), prev_dur):
                        parallel[code[p]] += 1
                    else:
                        sequential[code[p]] += 1
                busy += max(0, e - max(s, s if running is None else running))
                running = e if running is None else max(running, e)
                prev_dur = float(e - s)
            own[p] = float(spans[p][END] - spans[p][START]) - busy
        rows: dict[int, list] = {}
        for i in range(n):  # in span order: the float sums of the analyser
            if reach[i]:
                r = rows.setdefault(code[i], [0.0, 0.0, 0, False, spans[i][START]])
                r[0] += float(spans[i][END] - spans[i][START])
                r[1] += own[i]
                r[2] += 1
                r[3] = r[3] or spans[i][ERROR]
                r[4] = min(r[4], spans[i][START])
        per_trace.append((spans[root], code[root], complete, rows, parallel, sequential, edges))
    nodes = sorted({c for t in per_trace for c in t[3]})
    index = {c: k for k, c in enumerate(nodes)}
    f_trace, f_node, values = [], [], []
    graph_nodes: dict[tuple[int, int], list[int]] = {}
    graph_edges: Counter = Counter()
    for k, (root, entry, _, rows, parallel, sequential, edges) in enumerate(per_trace):
        for c in sorted(rows):
            lat, own_ns, count, err, first = rows[c]
            f_trace.append(k)
            f_node.append(index[c])
            values.append([lat / 1e6, own_ns / 1e6, own_ns / 1e6 if c % 2 else 0.0, count, float(err),
                           (first - root[START]) / 1e6])
            graph_nodes.setdefault((entry, c), [0, 0, 0])[0] += 1
        for c, m in parallel.items():
            graph_nodes[(entry, c)][1] += m
        for c, m in sequential.items():
            graph_nodes[(entry, c)][2] += m
        for caller, callee in edges:
            graph_edges[(entry, caller, callee)] += 1
    return AnalysedBatch(
        trace_ids=[a.trace_id.hex() for a in done], entries=[name(t[1]) for t in per_trace],
        start=np.array([t[0][START] for t in per_trace], dtype=np.int64),
        duration_ms=np.array([t[0][END] - t[0][START] for t in per_trace], dtype=np.int64) / 1e6,
        complete=np.array([t[2] for t in per_trace], dtype=bool),
        n_spans=np.array([len(a.spans) for a in done], dtype=np.int64),
        f_trace=np.array(f_trace, dtype=np.int64), f_node_idx=np.array(f_node, dtype=np.int64),
        nodes=[name(c) for c in nodes], values=np.array(values, dtype=np.float64).reshape(-1, 6),
        node_info={name(c): (types.service[c // 2], types.operation[c // 2],
                             "call_gap" if c % 2 else types.kind[c // 2]) for c in nodes},
        graph_nodes={(name(e), name(c)): v for (e, c), v in sorted(graph_nodes.items())},
        graph_edges={(name(e), name(a), name(b)): v for (e, a, b), v in sorted(graph_edges.items())},
        orphan_spans=orphans, cycle_spans=cycles, skewed_spans=int(skewed), reparented_spans=reparented)


# ---- the monolithic implementation, verbatim (temporary oracle while the analyser is split)

_get_pid = itemgetter(PID)
_get_type = itemgetter(TYPE)
_get_leaf = itemgetter(LEAF)
_get_kind = itemgetter(KIND)
_get_start = itemgetter(START)
_get_end = itemgetter(END)
_get_error = itemgetter(ERROR)


def _old_unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values and the inverse index (sort-based: faster than np.unique's hash path here)."""
    o = np.argsort(x, kind="stable")
    sx = x[o]
    flag = np.empty(len(x), dtype=bool)
    if len(x):
        flag[0] = True
        np.not_equal(sx[1:], sx[:-1], out=flag[1:])
    inv = np.empty(len(x), dtype=np.int64)
    inv[o] = np.cumsum(flag) - 1
    return sx[flag], inv


def _old_group_cummax(rel: np.ndarray, group: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Running maximum of ``rel`` (values in [0, span]) restarting at each group of a sorted group array."""
    width = int(span.max(initial=0)) + 1
    starts = _old_firsts(group)
    rank = np.cumsum(np.isin(np.arange(len(group)), starts)) - 1
    if len(starts) * width < 2**62:
        base = rank * width
        return np.maximum.accumulate(base + rel) - base
    return pd.Series(rel).groupby(group).cummax().to_numpy()  # absurd durations: no offset trick


def _old_firsts(group: np.ndarray) -> np.ndarray:
    """Positions where a sorted group array starts a new group."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]])


_OLD_MAX_WRAPPER_PAIRS = 4_000_000


def _old_wrapper_adoptions(par: np.ndarray, child: np.ndarray, kind: np.ndarray, svc: np.ndarray,
                       start: np.ndarray, end: np.ndarray, slack: float) -> tuple[np.ndarray, np.ndarray]:
    """Wrapper spans: (adopted spans, their adopting wrapper) -- see ``reparent_wrappers`` in the README.

    A childless INTERNAL/unspecified span A adopts every sibling B (same parent, same service, B not a
    SERVER/CONSUMER span, B no longer than A) whose interval lies inside A's, up to ``slack`` x B's duration
    outside (an async wrapper can return just before the client span it wraps is closed). Each B goes to its
    tightest container (shortest, then latest start, then lowest index); equal durations are ordered by index,
    so adoption never closes a cycle and nested wrappers chain. Candidate pairs come from a range search per
    sibling group sorted by start.
    """
    none = np.zeros(0, dtype=np.int64)
    n = len(par)
    nkids = np.bincount(par[child], minlength=n)
    b_all = np.flatnonzero(child & (kind != KIND_SERVER) & (kind != KIND_CONSUMER))
    a_all = b_all[(nkids[b_all] == 0) & (kind[b_all] <= KIND_INTERNAL)]
    if len(a_all) == 0 or len(b_all) < 2:
        return none, none
    # dense sibling-group ids (parent, service) and dense time ranks, so one int64 key sorts (group, time)
    _, g = _old_unique_inverse(par[b_all] * (int(svc.max(initial=0)) + 1) + svc[b_all])
    g_of = np.full(n, -1, dtype=np.int64)
    g_of[b_all] = g
    lead = (slack * (end[a_all] - start[a_all])).astype(np.int64)  # B no longer than A: B's slack <= A's
    _, rk = _old_unique_inverse(np.concatenate([start[b_all], start[a_all] - lead, end[a_all]]))
    width = int(rk.max(initial=0)) + 1
    nb, na = len(b_all), len(a_all)
    kb = g * width + rk[:nb]
    ob = np.argsort(kb, kind="stable")
    kb_s, b_s = kb[ob], b_all[ob]
    ga = g_of[a_all] * width
    lo = np.searchsorted(kb_s, ga + rk[nb:nb + na], side="left")
    hi = np.searchsorted(kb_s, ga + rk[nb + na:], side="right")
    cnt = hi - lo
    # a span overlapping more same-service siblings than this is a fan-out, not a wrapper: skipping it bounds the
    # candidate pairs (and memory) when thousands of parallel siblings overlap each other
    cnt = np.where(cnt > max(64, _OLD_MAX_WRAPPER_PAIRS // na), 0, cnt)
    total = int(cnt.sum())
    if total == 0:
        return none, none
    a = np.repeat(a_all, cnt)
    pos = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt) + np.repeat(lo, cnt)
    b = b_s[pos]
    dur_a, dur_b = end[a] - start[a], end[b] - start[b]
    outside = np.maximum(0, start[a] - start[b]) + np.maximum(0, end[b] - end[a])
    ok = (b != a) & (outside <= slack * dur_b) & ((dur_a > dur_b) | ((dur_a == dur_b) & (a < b)))
    a, b, dur_a = a[ok], b[ok], dur_a[ok]
    if len(a) == 0:
        return none, none
    o = np.lexsort((a, -start[a], dur_a, b))
    first = o[_old_firsts(b[o])]
    return b[first], a[first]


def _legacy_analyse(self: BatchAnalyser, done: list[Assembled]) -> AnalysedBatch:
    T = len(done)
    sizes = np.fromiter((len(a.spans) for a in done), dtype=np.int64, count=T)
    spans = [sp for a in done for sp in a.spans]
    n = len(spans)
    tr = np.repeat(np.arange(T, dtype=np.int64), sizes)
    pid = np.frombuffer(b"".join(map(_get_pid, spans)), dtype=">u8")
    typ = np.fromiter(map(_get_type, spans), dtype=np.int64, count=n)
    leaf = np.fromiter(map(_get_leaf, spans), dtype=np.int64, count=n)
    kind = np.fromiter(map(_get_kind, spans), dtype=np.int64, count=n)
    start = np.fromiter(map(_get_start, spans), dtype=np.int64, count=n)
    end = np.fromiter(map(_get_end, spans), dtype=np.int64, count=n)
    err = np.fromiter(map(_get_error, spans), dtype=bool, count=n)
    dur = end - start
    idx = np.arange(n, dtype=np.int64)

    # ---- parent links, resolved within each trace (a dict per trace: ids repeat across traces)
    par_l: list[int] = []
    base = 0
    for a in done:
        pos = {sp[SID]: i for i, sp in enumerate(a.spans, base)}
        get = pos.get
        par_l += [get(sp[PID], -1) for sp in a.spans]
        base += len(a.spans)
    par = np.array(par_l, dtype=np.int64)
    has_link = pid != 0
    hit = par >= 0
    top = ~hit  # parentless spans and orphans (parent never arrived)
    orphan = has_link & ~hit

    # ---- the root of each trace
    cls = np.where(~has_link, 0, np.where(orphan, 1, 2))
    o = np.lexsort((-end, start, cls, tr))
    root = o[_old_firsts(tr[o])]
    has_root = np.bincount(tr[~has_link], minlength=T) > 0

    # ---- reachability from the root (pointer jumping; cycles never reach a top)
    anc = np.where(top, idx, par)
    anc[root] = root
    for _ in range(64):
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            break
        anc = nxt
    reach = anc == root[tr]
    detached = ~reach
    under_top = detached & top[anc]
    in_cycle = detached & ~under_top
    det_per_trace = np.bincount(tr[detached], minlength=T)
    complete = np.fromiter((a.complete for a in done), dtype=bool, count=T) & has_root & (det_per_trace == 0)

    # ---- call pairs: a CLIENT/PRODUCER parent and its earliest SERVER/CONSUMER child
    is_callee = (kind == KIND_SERVER) | (kind == KIND_CONSUMER)
    is_caller = (kind == KIND_CLIENT) | (kind == KIND_PRODUCER)
    child = reach & (par >= 0)
    child[root] = False
    adopted = np.zeros(0, dtype=np.int64)
    if self.reparent_wrappers:
        adopted, wrapper = _old_wrapper_adoptions(par, child, kind, self.types.arrays()[0][typ], start, end,
                                              self.wrapper_slack)
        if len(adopted):
            par = par.copy()
            par[adopted] = wrapper
    pc = np.flatnonzero(child & is_callee & is_caller[np.maximum(par, 0)])
    callee_of = np.full(n, -1, dtype=np.int64)
    if len(pc):
        o2 = np.lexsort((start[pc], par[pc]))
        first = pc[o2][_old_firsts(par[pc][o2])]
        callee_of[par[first]] = first
    is_call = callee_of >= 0
    code = typ * 2
    code[is_call] = typ[callee_of[is_call]] * 2 + 1
    leaf_node = ~is_call & is_caller & (leaf >= 0)
    code[leaf_node] = leaf[leaf_node] * 2

    # ---- catch-all roots named after the first endpoint they reached
    if self.qualify:
        svc_of, catch_all = self.types.arrays()
        rtyp = typ[root]
        q = catch_all[rtyp]
        if q.any():
            cand = np.flatnonzero(reach & is_callee & (svc_of[typ] != svc_of[rtyp[tr]]) & q[tr])
            if len(cand):
                o3 = np.lexsort((start[cand], tr[cand]))
                firsts = cand[o3][_old_firsts(tr[cand][o3])]
                types = self.types
                for f in firsts.tolist():
                    r = int(root[tr[f]])
                    rt = int(typ[r])
                    qt = types.intern(types.service[rt],
                                      f"{types.operation[rt]} -> {types.operation[int(typ[f])]}")
                    code[r] = qt * 2

    # ---- own time: duration minus the union of the child intervals clipped to the parent
    c_idx = np.flatnonzero(child)
    p = par[c_idx]
    ps_, pe_ = start[p], end[p]
    cs = np.clip(start[c_idx], ps_, pe_)
    ce = np.clip(end[c_idx], ps_, pe_)
    skew = (start[c_idx] < ps_) | (end[c_idx] > pe_)
    if len(adopted):  # the slack of an adopted span is not clock skew (its real parent contained it)
        skew &= ~np.isin(c_idx, adopted)
    o4 = np.lexsort((cs, p))
    p_s, cs_s, ce_s, c_s = p[o4], cs[o4], ce[o4], c_idx[o4]
    firsts4 = np.zeros(len(p_s), dtype=bool)
    firsts4[_old_firsts(p_s)] = True
    if len(p_s):
        runmax = _old_group_cummax(ce_s - start[p_s], p_s, dur[p_s]) + start[p_s]
        prev = np.roll(runmax, 1)
        prev[firsts4] = cs_s[firsts4]
    else:
        prev = cs_s
    contrib = np.maximum(0, ce_s - np.maximum(cs_s, prev))
    busy = np.bincount(p_s, weights=contrib, minlength=n)
    own = dur - busy
    # structure evidence: each child after the first vs the running end of its earlier siblings
    later = ~firsts4
    cdur = (ce_s - cs_s).astype(np.float64)
    prev_dur = np.roll(cdur, 1)
    overlap = (prev - cs_s).astype(np.float64)
    parallel = later & (overlap > 0) & (overlap > self.overlap_fraction * np.minimum(cdur, prev_dur))
    sequential = later & ~parallel

    # ---- aggregate per (trace, node)
    R = np.flatnonzero(reach)
    nodes_u, ninv = _old_unique_inverse(code[R])
    NU = len(nodes_u)
    tkey = tr[R] * NU + ninv
    uk, kinv = _old_unique_inverse(tkey)
    m = len(uk)
    vals = np.zeros((m, 6), dtype=np.float64)
    vals[:, LAT] = np.bincount(kinv, weights=dur[R], minlength=m) / 1e6
    vals[:, OWN] = np.bincount(kinv, weights=own[R], minlength=m) / 1e6
    f_trace = uk // NU
    f_code = nodes_u[uk % NU]
    vals[:, GAP] = np.where(f_code % 2 == 1, vals[:, OWN], 0.0)
    vals[:, COUNT] = np.bincount(kinv, minlength=m)
    vals[:, ERR] = np.bincount(kinv, weights=err[R], minlength=m) > 0
    firststart = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(firststart, kinv, start[R])
    vals[:, FIRST] = (firststart - start[root][f_trace]) / 1e6

    # ---- names, graph evidence (loops run over distinct (entry, node) pairs only)
    names = [self.node_names.name(int(c)) for c in nodes_u.tolist()]
    f_nidx = uk % NU
    entry_code = code[root]
    entries = [self.node_names.name(int(c)) for c in entry_code.tolist()]
    info = {names[i]: self.node_names.meta(int(c)) for i, c in enumerate(nodes_u.tolist())}
    ent_u, ent_idx = _old_unique_inverse(entry_code)
    ent_names = [self.node_names.name(int(c)) for c in ent_u.tolist()]
    # traces per (entry, node)
    gk, gcount = np.unique(ent_idx[f_trace] * NU + f_nidx, return_counts=True)
    gnodes: dict[tuple[str, str], list[int]] = {}
    for k_, c_ in zip(gk.tolist(), gcount.tolist(), strict=True):
        e_, nd_ = divmod(k_, NU)
        gnodes[(ent_names[e_], names[nd_])] = [c_, 0, 0]
    gedges: dict[tuple[str, str, str], int] = {}
    if len(p_s):
        pnode = np.searchsorted(nodes_u, code[p_s])
        pe = ent_idx[tr[p_s]] * NU + pnode
        for flag, col in ((parallel, 1), (sequential, 2)):
            if flag.any():
                kk, cnt = np.unique(pe[flag], return_counts=True)
                for k_, c_ in zip(kk.tolist(), cnt.tolist(), strict=True):
                    e_, nd_ = divmod(k_, NU)
                    gnodes[(ent_names[e_], names[nd_])][col] += c_
        # call edges: distinct per trace, then traces per (entry, caller, callee)
        cnode = np.searchsorted(nodes_u, code[c_s])
        per_trace = np.unique((tr[p_s] * NU + pnode) * NU + cnode)
        t_, rest = np.divmod(per_trace, NU * NU)
        ek, ecount = np.unique(ent_idx[t_] * (NU * NU) + rest, return_counts=True)
        for k_, c_ in zip(ek.tolist(), ecount.tolist(), strict=True):
            e_, rest_ = divmod(k_, NU * NU)
            a_, b_ = divmod(rest_, NU)
            gedges[(ent_names[e_], names[a_], names[b_])] = c_
    rs = root
    return AnalysedBatch(
        trace_ids=[a.trace_id.hex() for a in done], entries=entries, start=start[rs],
        duration_ms=dur[rs] / 1e6, complete=complete, n_spans=sizes, f_trace=f_trace, f_node_idx=f_nidx, nodes=names,
        values=vals, node_info=info, graph_nodes=gnodes, graph_edges=gedges,
        orphan_spans=int(under_top.sum()), cycle_spans=int(in_cycle.sum()), reparented_spans=len(adopted),
        skewed_spans=int(skew[np.isin(c_idx, R)].sum()) if len(c_idx) else 0)
