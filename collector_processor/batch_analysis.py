"""Completed traces -> call-graph evidence and per-node features, for a whole batch of traces at once (numpy).

Span -> node (node ids in docs/ARCHITECTURE.md):
- a CLIENT/PRODUCER span with a SERVER/CONSUMER child is a *call node* ``net:{callee_service}:{callee_op}``
  (kind ``call_gap``, service = callee; the earliest such child names it): its latency is the client span's
  duration (gap + server time), its own time is the gap (network, queueing, sidecar), its cause the server span;
- a CLIENT/PRODUCER span without such a child that names its peer (peer.service, db.*, messaging.system) is a
  leaf ``{peer}:{op}`` (kind ``db`` / ``messaging``);
- every other span is ``{service}:{op}`` (kind ``span``); a catch-all root (a gateway's ``/*``) is named after
  the first endpoint it reached in another service: ``{service}:/* -> /api/orders``.
Tree: each trace's root is its earliest parentless span (else its earliest orphan, else its earliest span);
spans not reachable from it (under a missing parent or a second root: *orphans*; in a parent cycle: *cycles*)
are counted, make the trace incomplete and do not enter the features.
Per (trace, node): latency = total duration of its spans, count, own = duration minus the union of the child
intervals clipped to the span (clock-skewed children are clipped and counted), gap = own for call nodes, error
flag, first start offset. Structure evidence per node: consecutive children (by start) of one span that
overlap by more than ``overlap_fraction`` of the shorter are parallel pairs, else sequential pairs.
Wrapper spans (``reparent_wrappers``): a childless INTERNAL span that envelops same-service siblings (up to
``wrapper_slack``) adopts them as its children before all of the above (instrumentations that parent the wrapped call to the wrapper's
parent would otherwise make the wrapper an independent leaf that absorbs every downstream delay).
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np
import pandas as pd

from collector_processor.assembly import Assembled
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
from collector_processor.records import COUNT, ERR, FIRST, GAP, LAT, OWN, AnalysedBatch
from collector_processor.span_types import SpanTypes

_get_pid = itemgetter(PID)
_get_type = itemgetter(TYPE)
_get_leaf = itemgetter(LEAF)
_get_kind = itemgetter(KIND)
_get_start = itemgetter(START)
_get_end = itemgetter(END)
_get_error = itemgetter(ERROR)


def _unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _group_cummax(rel: np.ndarray, group: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Running maximum of ``rel`` (values in [0, span]) restarting at each group of a sorted group array."""
    width = int(span.max(initial=0)) + 1
    starts = _firsts(group)
    rank = np.cumsum(np.isin(np.arange(len(group)), starts)) - 1
    if len(starts) * width < 2**62:
        base = rank * width
        return np.maximum.accumulate(base + rel) - base
    return pd.Series(rel).groupby(group).cummax().to_numpy()  # absurd durations: no offset trick


def _firsts(group: np.ndarray) -> np.ndarray:
    """Positions where a sorted group array starts a new group."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]])


_MAX_WRAPPER_PAIRS = 4_000_000


def _wrapper_adoptions(par: np.ndarray, child: np.ndarray, kind: np.ndarray, svc: np.ndarray,
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
    _, g = _unique_inverse(par[b_all] * (int(svc.max(initial=0)) + 1) + svc[b_all])
    g_of = np.full(n, -1, dtype=np.int64)
    g_of[b_all] = g
    lead = (slack * (end[a_all] - start[a_all])).astype(np.int64)  # B no longer than A: B's slack <= A's
    _, rk = _unique_inverse(np.concatenate([start[b_all], start[a_all] - lead, end[a_all]]))
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
    first = o[_firsts(b[o])]
    return b[first], a[first]

class BatchAnalyser:
    """Turns assembled traces into an :class:`AnalysedBatch` (see the module docstring)."""

    def __init__(self, types: SpanTypes, overlap_fraction: float = 0.1, qualify_catch_all_root: bool = True,
                 reparent_wrappers: bool = True, wrapper_slack: float = 0.05) -> None:
        self.types = types
        self.overlap_fraction = overlap_fraction
        self.qualify = qualify_catch_all_root
        self.reparent_wrappers = reparent_wrappers
        self.wrapper_slack = wrapper_slack
        self._names: dict[int, str] = {}

    def node_name(self, code: int) -> str:
        """Node id of a node code (type id * 2 + 1 for call nodes)."""
        name = self._names.get(code)
        if name is None:
            t, call = divmod(code, 2)
            svc, op = self.types.service[t], self.types.operation[t]
            name = f"net:{svc}:{op}" if call else f"{svc}:{op}"
            self._names[code] = name
        return name

    def node_meta(self, code: int) -> tuple[str, str, str]:
        t, call = divmod(code, 2)
        return self.types.service[t], self.types.operation[t], ("call_gap" if call else self.types.kind[t])

    def analyse(self, done: list[Assembled]) -> AnalysedBatch:
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
        root = o[_firsts(tr[o])]
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
            adopted, wrapper = _wrapper_adoptions(par, child, kind, self.types.arrays()[0][typ], start, end,
                                                  self.wrapper_slack)
            if len(adopted):
                par = par.copy()
                par[adopted] = wrapper
        pc = np.flatnonzero(child & is_callee & is_caller[np.maximum(par, 0)])
        callee_of = np.full(n, -1, dtype=np.int64)
        if len(pc):
            o2 = np.lexsort((start[pc], par[pc]))
            first = pc[o2][_firsts(par[pc][o2])]
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
                    firsts = cand[o3][_firsts(tr[cand][o3])]
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
        firsts4[_firsts(p_s)] = True
        if len(p_s):
            runmax = _group_cummax(ce_s - start[p_s], p_s, dur[p_s]) + start[p_s]
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
        nodes_u, ninv = _unique_inverse(code[R])
        NU = len(nodes_u)
        tkey = tr[R] * NU + ninv
        uk, kinv = _unique_inverse(tkey)
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
        names = [self.node_name(int(c)) for c in nodes_u.tolist()]
        f_nidx = uk % NU
        entry_code = code[root]
        entries = [self.node_name(int(c)) for c in entry_code.tolist()]
        info = {names[i]: self.node_meta(int(c)) for i, c in enumerate(nodes_u.tolist())}
        ent_u, ent_idx = _unique_inverse(entry_code)
        ent_names = [self.node_name(int(c)) for c in ent_u.tolist()]
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
