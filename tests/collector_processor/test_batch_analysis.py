"""Batch analysis (collector_processor.batch_analysis, call_graph, features): the vectorised analyser gives, bit
for bit, what an independent plain-Python reading of its documented rules gives, trace by trace, on varied random
batches (call pairs, db/messaging leaves, catch-all roots, wrappers, orphans, cycles, second roots, clock skew,
equal start times, huge durations), for every option of the analyser, across batches sharing the name caches.
(The reference was also checked equal to the monolithic analyser the modules replaced.)"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
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
from collector_processor.records import AnalysedBatch
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


def _batch(seed: int, n_traces: int, huge: bool = False) -> tuple[list[Assembled], SpanTypes]:
    """A random batch and the span-type registry of its spans."""
    rng = np.random.default_rng(seed)
    types = SpanTypes()
    return [_trace(rng, types, k, huge and rng.random() < 0.5) for k in range(n_traces)], types


def _copy(types: SpanTypes) -> SpanTypes:
    """The same registry, for the reference to intern its catch-all names into."""
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
def test_analyser_matches_the_reference_bit_for_bit(options: dict) -> None:
    for seed in range(12):
        done, types = _batch(seed, n_traces=[1, 7, 40, 120][seed % 4], huge=seed % 6 == 5)
        analyser = BatchAnalyser(types, **options)
        for part in (done[: len(done) // 2], done[len(done) // 2:], done):  # the name caches carry over
            if not part:
                continue
            ref_types = _copy(types)
            _assert_identical(analyser.analyse(part), _reference_analyse(part, ref_types, **options))
            assert (ref_types.service, ref_types.operation) == (types.service, types.operation)  # same interning


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
                r = rows.setdefault(code[i], [0.0, 0.0, 0, 0, spans[i][START], False])
                r[0] += float(spans[i][END] - spans[i][START])
                r[1] += own[i]
                r[2] += 1
                r[3] += int(bool(spans[i][ERROR]))  # failed spans of the node
                r[4] = min(r[4], spans[i][START])
                # a failed span with a failed child span of another node: its error may be the callee's
                r[5] |= bool(spans[i][ERROR]) and any(spans[c][ERROR] and code[c] != code[i] for c in kids.get(i, []))
        per_trace.append((spans[root], code[root], complete, rows, parallel, sequential, edges))
    nodes = sorted({c for t in per_trace for c in t[3]})
    index = {c: k for k, c in enumerate(nodes)}
    f_trace, f_node, values, callee_error = [], [], [], []
    graph_nodes: dict[tuple[int, int], list[int]] = {}
    graph_edges: Counter = Counter()
    for k, (root, entry, _, rows, parallel, sequential, edges) in enumerate(per_trace):
        for c in sorted(rows):
            lat, own_ns, count, err, first, explained = rows[c]
            callee_error.append(explained)
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
        callee_error=np.array(callee_error, dtype=bool),
        node_info={name(c): (types.service[c // 2], types.operation[c // 2],
                             "call_gap" if c % 2 else types.kind[c // 2]) for c in nodes},
        graph_nodes={(name(e), name(c)): v for (e, c), v in sorted(graph_nodes.items())},
        graph_edges={(name(e), name(a), name(b)): v for (e, a, b), v in sorted(graph_edges.items())},
        orphan_spans=orphans, cycle_spans=cycles, skewed_spans=int(skewed), reparented_spans=reparented)

