"""Call-graph helpers; the :class:`CallGraph` record itself lives in :mod:`collector_processor.records`."""

from __future__ import annotations

from collections.abc import Iterable

from collector_processor.records import CallGraph, NodeInfo

__all__ = ["CallGraph", "NodeInfo", "acyclic", "build_call_graph", "infer_structure"]


def infer_structure(has_children: bool, overlapping: int, sequential: int) -> str | None:
    """``"max"`` when the children of a node mostly ran in parallel, ``"sum"`` otherwise; None for leaves."""
    if not has_children:
        return None
    return "max" if overlapping > sequential else "sum"


def acyclic(entry: str, edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop the edges that close a cycle between span types (recursive calls), so that the causal graph stays
    acyclic: depth-first from the entry, the edges in the order given (most frequent first)."""
    out: dict[str, list[str]] = {}
    for a, b in edges:
        if a != b:
            out.setdefault(a, []).append(b)
    kept: list[tuple[str, str]] = []
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    starts = [entry] + [a for a, _ in edges]
    for s in starts:
        if s in state:
            continue
        state[s] = 1
        stack = [(s, iter(out.get(s, ())))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                continue
            st = state.get(nxt)
            if st == 1:
                continue  # back edge: would close a cycle
            kept.append((node, nxt))
            if st is None:
                state[nxt] = 1
                stack.append((nxt, iter(out.get(nxt, ()))))
    return kept


def build_call_graph(entry: str, nodes: Iterable[tuple[str, str, str, str, int, int]],
                     edges: list[tuple[str, str]], traces: int) -> CallGraph:
    """The :class:`CallGraph` of an entry point from a store's evidence (what every trace store reads back):
    ``nodes`` as (node, service, operation, kind, overlapping, sequential) in column order, ``edges`` as
    (caller, callee) most frequent first (cycles dropped), ``traces`` the entry point's stored traces."""
    cg = CallGraph(entry=entry)
    kept = acyclic(entry, edges)
    callers = {a for a, _ in kept}
    for node, service, operation, kind, overlapping, sequential in nodes:
        cg.nodes[node] = NodeInfo(service, operation, kind,
                                  infer_structure(node in callers, int(overlapping), int(sequential)))
    cg.call_edges = sorted(kept)
    cg.traces = int(traces)
    return cg
