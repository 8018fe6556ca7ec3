"""One assembled trace -> its call graph contribution and per-node features.

Span -> node:
- a CLIENT/PRODUCER span with a SERVER/CONSUMER child is a *call node* ``net:{callee_service}:{callee_op}``
  (kind ``call_gap``, service = callee): its latency is the client span's duration (gap + server time), its own
  time is the gap (network, queueing, sidecar), and its single cause is the callee's server span type;
- a CLIENT/PRODUCER span without such a child is a leaf ``{peer}:{op}`` (kind ``db``/``messaging``) when the
  span names its peer (peer.service, db.system, db.name, messaging.system);
- every other span is ``{service}:{op}`` (kind ``span``).
Per node and trace: latency = total duration of its spans (ms), count, own = duration minus the union of the
child intervals (clipped to the span), error flag, first start offset. Structure evidence: for each span with
several children, consecutive children (by start) that overlap count as parallel, else as sequential.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector_processor.otlp_decode import (
    END,
    ERROR,
    KIND,
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_PRODUCER,
    KIND_SERVER,
    OP,
    PEER,
    PEER_KIND,
    PID,
    SERVICE,
    SID,
    START,
)

# per-node feature vector layout in TraceRecord.nodes
LAT, OWN, GAP, COUNT, ERR, FIRST = range(6)
_CALLER_KINDS = (KIND_CLIENT, KIND_PRODUCER)
_CALLEE_KINDS = (KIND_SERVER, KIND_CONSUMER)


@dataclass
class TraceRecord:
    """Everything the store keeps about one completed trace."""

    trace_id: str
    entry: str
    start_unix_nano: int
    duration_ms: float
    complete: bool
    n_spans: int
    nodes: dict[str, list] = field(default_factory=dict)          # node -> [lat, own, gap, count, err, first]
    node_info: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # node -> (service, op, kind)
    edges: set[tuple[str, str]] = field(default_factory=set)       # caller node -> callee node
    parallel: dict[str, list[int]] = field(default_factory=dict)   # node -> [overlapping pairs, sequential pairs]
    orphan_spans: int = 0      # parent span never arrived (or a second root): not part of the entry's tree
    cycle_spans: int = 0       # parent links form a cycle: unreachable from the root
    skewed_spans: int = 0      # child interval outside its parent's (clock skew): clipped for own time


def _union_within(intervals: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Length of the union of intervals clipped to [lo, hi]."""
    total = 0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if s < lo:
            s = lo
        if e > hi:
            e = hi
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def is_catch_all(op: str) -> bool:
    """A root operation that names no endpoint (``/*``, ``/``, ``GET /**``): a gateway's catch-all route."""
    route = op.rsplit(" ", 1)[-1]
    return "*" in route or route == "/"


def analyse_trace(trace_hex: str, spans: list[tuple], complete: bool, overlap_fraction: float = 0.1,
                  qualify_catch_all_root: bool = True) -> TraceRecord:
    """Build the per-node features and graph evidence of one trace (spans: decoded span tuples).

    With ``qualify_catch_all_root``, a root whose operation is a catch-all route (an API gateway's ``/*``) is
    named after the first endpoint it reached in another service (``/* -> /api/v1/orders``), so that each API
    endpoint behind a gateway gets its own entry point and graph."""
    n = len(spans)
    index = {sp[SID]: i for i, sp in enumerate(spans)}
    children: list[list[int]] = [[] for _ in range(n)]
    roots: list[int] = []
    orphans: list[int] = []
    for i, sp in enumerate(spans):
        pid = sp[PID]
        if not pid:
            roots.append(i)
        else:
            j = index.get(pid)
            if j is None:
                orphans.append(i)
            elif j != i:
                children[j].append(i)
    # the root: earliest (then longest) parentless span; without one, the earliest orphan; else earliest span
    candidates = roots or orphans or list(range(n))
    root = min(candidates, key=lambda i: (spans[i][START], -spans[i][END]))
    if not roots:
        complete = False

    # pre-order walk from the root (visited set guards against cycles through the root)
    order: list[int] = []
    parent_of = [-1] * n
    seen = bytearray(n)
    stack = [root]
    seen[root] = 1
    while stack:
        i = stack.pop()
        order.append(i)
        for c in children[i]:
            if not seen[c]:
                seen[c] = 1
                parent_of[c] = i
                stack.append(c)
    reached = len(order)
    detached = n - reached
    rec = TraceRecord(trace_id=trace_hex, entry="", start_unix_nano=spans[root][START],
                      duration_ms=(spans[root][END] - spans[root][START]) / 1e6, complete=complete, n_spans=n)
    if detached:
        # spans outside the root's tree: under an orphan/second root, or in a parent cycle
        outside_roots = set(roots) | set(orphans)
        under_other_root = 0
        for r in outside_roots:
            if r == root or seen[r]:
                continue
            stack = [r]
            seen[r] = 1
            while stack:
                i = stack.pop()
                under_other_root += 1
                for c in children[i]:
                    if not seen[c]:
                        seen[c] = 1
                        stack.append(c)
        rec.orphan_spans = under_other_root
        rec.cycle_spans = detached - under_other_root
        rec.complete = False

    root_name = None
    rsp = spans[root]
    if qualify_catch_all_root and is_catch_all(rsp[OP]):
        first = None
        for i in order:
            sp = spans[i]
            if sp[KIND] in _CALLEE_KINDS and sp[SERVICE] != rsp[SERVICE] and (first is None or sp[START] < first[START]):
                first = sp
        if first is not None:
            root_name = (f"{rsp[SERVICE]}:{rsp[OP]} -> {first[OP]}", f"{rsp[OP]} -> {first[OP]}")

    node_of: list[str | None] = [None] * n
    nodes = rec.nodes
    info = rec.node_info
    edges = rec.edges
    parallel = rec.parallel
    t0 = rec.start_unix_nano
    skewed = 0
    for i in order:
        sp = spans[i]
        kids = children[i]
        kind = sp[KIND]
        node = None
        if kind in _CALLER_KINDS:
            callee = None
            for c in kids:
                ck = spans[c]
                if ck[KIND] in _CALLEE_KINDS and (callee is None or ck[START] < callee[START]):
                    callee = ck
            if callee is not None:
                node = f"net:{callee[SERVICE]}:{callee[OP]}"
                if node not in info:
                    info[node] = (callee[SERVICE], callee[OP], "call_gap")
            elif sp[PEER] is not None:
                node = f"{sp[PEER]}:{sp[OP]}"
                if node not in info:
                    info[node] = (sp[PEER], sp[OP], sp[PEER_KIND])
        if node is None:
            if i == root and root_name is not None:
                node = root_name[0]
                info[node] = (sp[SERVICE], root_name[1], "span")
            else:
                node = f"{sp[SERVICE]}:{sp[OP]}"
                if node not in info:
                    info[node] = (sp[SERVICE], sp[OP], "span")
        node_of[i] = node
        p = parent_of[i]
        if p >= 0:
            edges.add((node_of[p], node))
        s, e = sp[START], sp[END]
        dur = e - s
        if kids:
            ivs = []
            for c in kids:
                ck = spans[c]
                cs, ce = ck[START], ck[END]
                if cs < s or ce > e:
                    skewed += 1
                ivs.append((cs, ce))
            busy = _union_within(ivs, s, e)
            if len(ivs) > 1:
                ivs.sort()
                over = seq = 0
                run_end = ivs[0][1]
                prev_dur = ivs[0][1] - ivs[0][0]
                for cs, ce in ivs[1:]:
                    shorter = min(prev_dur, ce - cs)
                    if run_end - cs > overlap_fraction * shorter and run_end > cs:
                        over += 1
                    else:
                        seq += 1
                    if ce > run_end:
                        run_end = ce
                        prev_dur = ce - cs
                pv = parallel.get(node)
                if pv is None:
                    parallel[node] = [over, seq]
                else:
                    pv[0] += over
                    pv[1] += seq
        else:
            busy = 0
        own = (dur - busy) / 1e6
        f = nodes.get(node)
        if f is None:
            nodes[node] = [dur / 1e6, own, own if node.startswith("net:") else 0.0, 1,
                           bool(sp[ERROR]), (s - t0) / 1e6]
        else:
            f[LAT] += dur / 1e6
            f[OWN] += own
            if node.startswith("net:"):
                f[GAP] += own
            f[COUNT] += 1
            if sp[ERROR]:
                f[ERR] = True
            if (s - t0) / 1e6 < f[FIRST]:
                f[FIRST] = (s - t0) / 1e6
    rec.skewed_spans = skewed
    rec.entry = node_of[root]
    return rec
