"""A batch of completed traces -> the span tree of each trace, the call-graph node of each span and the call
graph's evidence (numpy over the whole batch; node ids in docs/ARCHITECTURE.md).

Tree: each trace's root is its earliest parentless span (else its earliest orphan, else its earliest span);
spans not reachable from it (under a missing parent or a second root: *orphans*; in a parent cycle: *cycles*)
are counted, make the trace incomplete and do not enter the features.
Wrapper spans (``reparent_wrappers``): a childless INTERNAL span that envelops same-service siblings (up to
``wrapper_slack``) adopts them as its children before the nodes are named (instrumentations that parent the
wrapped call to the wrapper's parent would otherwise make the wrapper an independent leaf that absorbs every
downstream delay).
Span -> node:
- a CLIENT/PRODUCER span with a SERVER/CONSUMER child is a *call node* ``net:{callee_service}:{callee_op}``
  (kind ``call_gap``, service = callee; the earliest such child names it): its latency is the client span's
  duration (gap + server time), its own time is the gap (network, queueing, sidecar), its cause the server span;
- a CLIENT/PRODUCER span without such a child that names its peer (peer.service, db.*, messaging.system) is a
  leaf ``{peer}:{op}`` (kind ``db`` / ``messaging``);
- every other span is ``{service}:{op}`` (kind ``span``); a catch-all root (a gateway's ``/*``) is named after
  the first endpoint it reached in another service: ``{service}:/* -> /api/orders``.
A node is carried as an int *node code*: span type id x 2, + 1 for call nodes.
Graph evidence per (entry, node): traces, and the children of its spans in parallel / in sequence (consecutive
children by start that overlap by more than ``overlap_fraction`` of the shorter are a parallel pair); per
(entry, caller, callee): traces with that call edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from collector_processor.assembly import Assembled
from collector_processor.grouping import group_cummax, group_starts, unique_inverse
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
)
from collector_processor.span_types import SpanTypes

# a span overlapping more same-service siblings than this share of the pairs budget is a fan-out, not a wrapper
_MAX_WRAPPER_PAIRS = 4_000_000
_MAX_POINTER_JUMPS = 64  # each jump doubles the climb: 64 reach any depth; only parent cycles use them all


@dataclass
class SpanColumns:
    """The spans of a batch as columns, trace after trace (each trace's spans in assembly order)."""

    sizes: np.ndarray          # spans per trace
    trace: np.ndarray          # trace ordinal per span
    has_parent_id: np.ndarray  # the span names a parent (it may never have arrived)
    type: np.ndarray           # span type id (collector_processor.span_types)
    leaf: np.ndarray           # peer leaf type id of a CLIENT/PRODUCER span, else -1
    kind: np.ndarray           # OTLP span kind
    start: np.ndarray          # ns
    end: np.ndarray            # ns
    error: np.ndarray          # bool
    duration: np.ndarray       # ns
    span_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # the 8 id bytes as uint64
    parent_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # uint64, 0 for a root

    @property
    def n_traces(self) -> int:
        return len(self.sizes)


def span_columns(done: Sequence[Assembled]) -> SpanColumns:
    """Column arrays of every span of the batch (one pass over the span tuples: they are read once)."""
    sizes = np.fromiter((len(a.spans) for a in done), dtype=np.int64, count=len(done))
    spans = [sp for a in done for sp in a.spans]
    n = len(spans)
    cols = list(zip(*spans, strict=True)) if n else [()] * (ERROR + 1)
    start = np.fromiter(cols[START], dtype=np.int64, count=n)
    end = np.fromiter(cols[END], dtype=np.int64, count=n)
    parent_id = np.frombuffer(b"".join(cols[PID]), dtype=">u8").astype(np.uint64)
    return SpanColumns(
        sizes=sizes,
        trace=np.repeat(np.arange(len(done), dtype=np.int64), sizes),
        has_parent_id=parent_id != 0,
        type=np.fromiter(cols[TYPE], dtype=np.int64, count=n),
        leaf=np.fromiter(cols[LEAF], dtype=np.int64, count=n),
        kind=np.fromiter(cols[KIND], dtype=np.int64, count=n),
        start=start, end=end,
        error=np.fromiter(cols[ERROR], dtype=bool, count=n),
        duration=end - start,
        span_id=np.frombuffer(b"".join(cols[SID]), dtype=">u8").astype(np.uint64),
        parent_id=parent_id)


def parent_positions(cols: SpanColumns) -> np.ndarray:
    """Position (in :func:`span_columns` order) of each span's parent, -1 when it is not in the trace. Span ids
    repeat across traces, so a span is looked up by (trace, span id): the ids are ranked (exactly, no hashing)
    and ``trace * ranks + rank`` is a key unique within the batch, searched in sorted order."""
    n = len(cols.trace)
    if not n:
        return np.zeros(0, dtype=np.int64)
    ids, inverse = np.unique(np.concatenate([cols.span_id, cols.parent_id]), return_inverse=True)
    ranks = np.int64(len(ids))
    key = cols.trace * ranks + inverse[:n]
    wanted = cols.trace * ranks + inverse[n:]
    order = np.argsort(key, kind="stable")
    at = np.maximum(np.searchsorted(key[order], wanted, side="right") - 1, 0)  # the last span with that id
    found = key[order[at]] == wanted
    return np.where(found, order[at], -1).astype(np.int64)


@dataclass
class SpanTree:
    """The span tree of every trace of a batch."""

    parent: np.ndarray    # parent position per span (-1: none), after wrapper adoption
    root: np.ndarray      # root span per trace
    reach: np.ndarray     # the span is reachable from its trace's root
    child: np.ndarray     # reachable and not a root: it has a parent in the tree
    complete: np.ndarray  # per trace: assembled complete, has a parentless span and no detached span
    adopted: np.ndarray   # spans adopted by a wrapper span
    orphan_spans: int     # detached under a missing parent or a second root
    cycle_spans: int      # detached in (or under) a parent cycle


def trace_roots(cols: SpanColumns, parent: np.ndarray) -> np.ndarray:
    """Root span per trace: the earliest parentless span, else the earliest orphan, else the earliest span
    (the longest first among equal starts)."""
    orphan = cols.has_parent_id & (parent < 0)
    rank = np.where(~cols.has_parent_id, 0, np.where(orphan, 1, 2))
    order = np.lexsort((-cols.end, cols.start, rank, cols.trace))
    return order[group_starts(cols.trace[order])]


def top_ancestors(parent: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Topmost ancestor of each span by pointer jumping: a root or a span without parent in the trace stops the
    climb; a span in (or under) a parent cycle ends anywhere on the cycle."""
    ancestor = np.where(parent < 0, np.arange(len(parent), dtype=np.int64), parent)
    ancestor[root] = root
    for _ in range(_MAX_POINTER_JUMPS):
        jumped = ancestor[ancestor]
        if np.array_equal(jumped, ancestor):
            break
        ancestor = jumped
    return ancestor


def span_tree(cols: SpanColumns, parent: np.ndarray, assembled_complete: np.ndarray, types: SpanTypes,
              reparent_wrappers: bool, wrapper_slack: float) -> SpanTree:
    """Roots, reachability, detached spans (orphans, cycles) and wrapper adoption of a batch."""
    root = trace_roots(cols, parent)
    ancestor = top_ancestors(parent, root)
    reach = ancestor == root[cols.trace]
    detached = ~reach
    under_top = detached & (parent < 0)[ancestor]
    n_traces = cols.n_traces
    has_root = np.bincount(cols.trace[~cols.has_parent_id], minlength=n_traces) > 0
    detached_per_trace = np.bincount(cols.trace[detached], minlength=n_traces)
    child = reach & (parent >= 0)
    child[root] = False
    adopted = np.zeros(0, dtype=np.int64)
    if reparent_wrappers:
        adopted, wrapper = wrapper_adoptions(parent, child, cols.kind, types.arrays()[0][cols.type], cols.start,
                                             cols.end, wrapper_slack)
        if len(adopted):
            parent = parent.copy()
            parent[adopted] = wrapper
    return SpanTree(parent=parent, root=root, reach=reach, child=child,
                    complete=assembled_complete & has_root & (detached_per_trace == 0), adopted=adopted,
                    orphan_spans=int(under_top.sum()), cycle_spans=int((detached & ~under_top).sum()))


def wrapper_adoptions(par: np.ndarray, child: np.ndarray, kind: np.ndarray, svc: np.ndarray,
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
    _, g = unique_inverse(par[b_all] * (int(svc.max(initial=0)) + 1) + svc[b_all])
    g_of = np.full(n, -1, dtype=np.int64)
    g_of[b_all] = g
    lead = (slack * (end[a_all] - start[a_all])).astype(np.int64)  # B no longer than A: B's slack <= A's
    _, rk = unique_inverse(np.concatenate([start[b_all], start[a_all] - lead, end[a_all]]))
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
    cnt = np.where(cnt > max(64, _MAX_WRAPPER_PAIRS // na), 0, cnt)
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
    first = o[group_starts(b[o])]
    return b[first], a[first]


def _is_callee(kind: np.ndarray) -> np.ndarray:
    return (kind == KIND_SERVER) | (kind == KIND_CONSUMER)


def _is_caller(kind: np.ndarray) -> np.ndarray:
    return (kind == KIND_CLIENT) | (kind == KIND_PRODUCER)


def call_node_codes(cols: SpanColumns, tree: SpanTree) -> np.ndarray:
    """Node code per span: a caller with a callee child is the call node of its earliest callee, a caller
    without one that names its peer is the peer's leaf node, every other span is its own type's node."""
    is_caller = _is_caller(cols.kind)
    parent = tree.parent
    pairs = np.flatnonzero(tree.child & _is_callee(cols.kind) & is_caller[np.maximum(parent, 0)])
    callee_of = np.full(len(parent), -1, dtype=np.int64)
    if len(pairs):
        order = np.lexsort((cols.start[pairs], parent[pairs]))
        earliest = pairs[order][group_starts(parent[pairs][order])]
        callee_of[parent[earliest]] = earliest
    is_call = callee_of >= 0
    code = cols.type * 2
    code[is_call] = cols.type[callee_of[is_call]] * 2 + 1
    leaf_node = ~is_call & is_caller & (cols.leaf >= 0)
    code[leaf_node] = cols.leaf[leaf_node] * 2
    return code


def qualify_catch_all_roots(code: np.ndarray, cols: SpanColumns, tree: SpanTree, types: SpanTypes) -> None:
    """Rename (in ``code``) each catch-all root after the first endpoint its trace reached in another service,
    interning the qualified type ``{op} -> {endpoint op}`` of the root's service."""
    svc_of, catch_all = types.arrays()
    root_type = cols.type[tree.root]
    catch_all_trace = catch_all[root_type]
    if not catch_all_trace.any():
        return
    typ, trace = cols.type, cols.trace
    cand = np.flatnonzero(tree.reach & _is_callee(cols.kind) & (svc_of[typ] != svc_of[root_type[trace]])
                          & catch_all_trace[trace])
    if len(cand) == 0:
        return
    order = np.lexsort((cols.start[cand], trace[cand]))
    for first in cand[order][group_starts(trace[cand][order])].tolist():
        root = int(tree.root[trace[first]])
        rt = int(typ[root])
        qualified = types.intern(types.service[rt], f"{types.operation[rt]} -> {types.operation[int(typ[first])]}")
        code[root] = qualified * 2


@dataclass
class ChildIntervals:
    """Every child span of the batch, grouped by parent and ordered by start, its interval clipped to the
    parent's (the basis of own time and of the parallel / sequential evidence)."""

    child: np.ndarray     # child span
    parent: np.ndarray    # its parent span
    start: np.ndarray     # clipped start (ns)
    end: np.ndarray       # clipped end (ns)
    first: np.ndarray     # the parent's first child
    earlier_end: np.ndarray  # running end of the earlier siblings (the child's own start for a first child)
    skewed_spans: int     # children that stuck out of their parent (clock skew; adopted spans excepted)


def child_intervals(cols: SpanColumns, tree: SpanTree) -> ChildIntervals:
    """Clip each child to its parent, sort by (parent, start) and track the running end of earlier siblings."""
    start, end = cols.start, cols.end
    c = np.flatnonzero(tree.child)
    p = tree.parent[c]
    ps, pe = start[p], end[p]
    cs = np.clip(start[c], ps, pe)
    ce = np.clip(end[c], ps, pe)
    skew = (start[c] < ps) | (end[c] > pe)
    if len(tree.adopted):  # the slack of an adopted span is not clock skew (its real parent contained it)
        skew &= ~np.isin(c, tree.adopted)
    order = np.lexsort((cs, p))
    p, cs, ce, c = p[order], cs[order], ce[order], c[order]
    first = np.zeros(len(p), dtype=bool)
    first[group_starts(p)] = True
    if len(p):
        earlier_end = np.roll(group_cummax(ce - start[p], p, cols.duration[p]) + start[p], 1)
        earlier_end[first] = cs[first]
    else:
        earlier_end = cs
    return ChildIntervals(child=c, parent=p, start=cs, end=ce, first=first, earlier_end=earlier_end,
                          skewed_spans=int(skew.sum()))


def sibling_overlaps(iv: ChildIntervals, overlap_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(parallel, sequential) per child after the first: it overlaps the running end of its earlier siblings
    by more than ``overlap_fraction`` of the shorter of it and its predecessor, or not."""
    later = ~iv.first
    duration = (iv.end - iv.start).astype(np.float64)
    overlap = (iv.earlier_end - iv.start).astype(np.float64)
    parallel = later & (overlap > 0) & (overlap > overlap_fraction * np.minimum(duration, np.roll(duration, 1)))
    return parallel, later & ~parallel


class NodeNames:
    """Node id and metadata of node codes, cached (codes are stable: span types are append-only)."""

    def __init__(self, types: SpanTypes) -> None:
        self.types = types
        self._names: dict[int, str] = {}

    def name(self, code: int) -> str:
        """``net:{service}:{op}`` for a call node, ``{service}:{op}`` otherwise."""
        name = self._names.get(code)
        if name is None:
            t, call = divmod(code, 2)
            svc, op = self.types.service[t], self.types.operation[t]
            name = f"net:{svc}:{op}" if call else f"{svc}:{op}"
            self._names[code] = name
        return name

    def names(self, codes: np.ndarray) -> list[str]:
        return [self.name(c) for c in codes.tolist()]

    def meta(self, code: int) -> tuple[str, str, str]:
        """(service, operation, kind) of a node; kind ``call_gap`` for call nodes."""
        t, call = divmod(code, 2)
        return self.types.service[t], self.types.operation[t], ("call_gap" if call else self.types.kind[t])


@dataclass
class GraphEvidence:
    """What a batch says about the call graph of each entry point."""

    nodes: dict[tuple[str, str], list[int]]     # (entry, node) -> [traces, parallel pairs, sequential pairs]
    edges: dict[tuple[str, str, str], int]      # (entry, caller, callee) -> traces


def graph_evidence(trace: np.ndarray, code: np.ndarray, entry_code: np.ndarray, node_codes: np.ndarray,
                   names: list[str], row_trace: np.ndarray, row_node: np.ndarray, iv: ChildIntervals,
                   parallel: np.ndarray, sequential: np.ndarray, node_names: NodeNames) -> GraphEvidence:
    """Counts per distinct (entry, node) and (entry, caller, callee) of the batch, from the feature rows
    (``row_trace``, ``row_node`` into the sorted ``node_codes``) and the child intervals; Python loops run over
    the distinct keys only."""
    nu = len(node_codes)
    entries, entry_of_trace = unique_inverse(entry_code)
    entry_names = node_names.names(entries)
    keys, traces = np.unique(entry_of_trace[row_trace] * nu + row_node, return_counts=True)
    nodes: dict[tuple[str, str], list[int]] = {}
    for k, c in zip(keys.tolist(), traces.tolist(), strict=True):
        e, nd = divmod(k, nu)
        nodes[(entry_names[e], names[nd])] = [c, 0, 0]
    edges: dict[tuple[str, str, str], int] = {}
    if len(iv.parent) == 0:
        return GraphEvidence(nodes, edges)
    parent_node = np.searchsorted(node_codes, code[iv.parent])
    parent_key = entry_of_trace[trace[iv.parent]] * nu + parent_node
    for flag, col in ((parallel, 1), (sequential, 2)):
        if flag.any():
            keys, pairs = np.unique(parent_key[flag], return_counts=True)
            for k, c in zip(keys.tolist(), pairs.tolist(), strict=True):
                e, nd = divmod(k, nu)
                nodes[(entry_names[e], names[nd])][col] += c
    # call edges: distinct per trace, then traces per (entry, caller, callee)
    child_node = np.searchsorted(node_codes, code[iv.child])
    per_trace = np.unique((trace[iv.parent] * nu + parent_node) * nu + child_node)
    t, edge = np.divmod(per_trace, nu * nu)
    keys, traces = np.unique(entry_of_trace[t] * (nu * nu) + edge, return_counts=True)
    for k, c in zip(keys.tolist(), traces.tolist(), strict=True):
        e, rest = divmod(k, nu * nu)
        a, b = divmod(rest, nu)
        edges[(entry_names[e], names[a], names[b])] = c
    return GraphEvidence(nodes, edges)
