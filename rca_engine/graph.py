"""Causal graph helpers: build the cause -> effect DAG, validate it and query ancestors."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import networkx as nx

from .errors import GraphError, UnknownNodeError


def invert_call_graph(call_graph: nx.DiGraph | Iterable[tuple[Hashable, Hashable]],
                      nodes: Iterable[Hashable | tuple[Hashable, Mapping[str, Any]]] = ()) -> nx.DiGraph:
    """Causal graph of latencies from a caller -> callee call graph (callee latency causes caller latency).

    Accepts an ``nx.DiGraph`` (node attributes are copied), an iterable of ``(caller, callee)`` pairs or an
    adjacency mapping ``{caller: [callees]}``. ``nodes`` are added first, in their order: node ids or
    ``(node, attributes)`` pairs (a node without calls stays a node; the attributes become node attributes).
    Edges are added in the order given, so each node's causes keep the order of its calls.
    """
    causal = nx.DiGraph()
    causal.add_nodes_from(nodes)
    if isinstance(call_graph, nx.DiGraph):
        causal.add_nodes_from(call_graph.nodes(data=True))
        causal.add_edges_from((callee, caller, dict(data)) for caller, callee, data in call_graph.edges(data=True))
    else:
        if isinstance(call_graph, Mapping):
            causal.add_nodes_from(call_graph)  # a caller with no callees is still a node
        for edge in _edge_iter(call_graph):
            caller, callee = _pair(edge)
            causal.add_edge(callee, caller)
    validate_graph(causal)
    return causal


def graph_from_edges(edges: Iterable[tuple[Hashable, Hashable]], nodes: Iterable[Hashable] = ()) -> nx.DiGraph:
    """Cause -> effect DAG from ``(cause, effect)`` pairs or ``{cause: [effects]}`` (plus isolated ``nodes``), validated."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    if isinstance(edges, Mapping):
        graph.add_nodes_from(edges)
    for edge in _edge_iter(edges):
        graph.add_edge(*_pair(edge))
    validate_graph(graph)
    return graph


def _edge_iter(edges: object) -> Iterable[object]:
    """The pairs of an edge iterable, or of an adjacency mapping ``{node: [nodes it points to]}``."""
    if isinstance(edges, Mapping):
        pairs: list[tuple[object, object]] = []
        for a, bs in edges.items():
            if isinstance(bs, (str, bytes)) or not isinstance(bs, Iterable):
                raise GraphError(f"an adjacency mapping needs a list of nodes per node, got {a!r}: {bs!r}")
            pairs.extend((a, b) for b in bs)
        return pairs
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Iterable):
        raise GraphError(f"edges must be an iterable of (source, target) pairs or a networkx.DiGraph, "
                         f"got {type(edges).__name__}")
    return edges


def _pair(edge: object) -> tuple[Hashable, Hashable]:
    if not isinstance(edge, (tuple, list)) or len(edge) != 2:
        raise GraphError(f"an edge must be a pair (source, target), got {edge!r}")
    a, b = edge
    if a is None or b is None or a == "" or b == "":
        raise GraphError(f"an edge has an empty endpoint: {edge!r}")
    return a, b


def validate_graph(graph: object) -> nx.DiGraph:
    """Check that ``graph`` is a non-empty directed acyclic graph; raise :class:`GraphError` naming a cycle."""
    if not isinstance(graph, nx.DiGraph) or isinstance(graph, nx.MultiDiGraph):
        raise GraphError(f"the causal graph must be a networkx.DiGraph (cause -> effect), got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise GraphError("the causal graph has no nodes")
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise GraphError(f"the causal graph has a self-loop on {loops[0][0]!r}")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        path = " -> ".join(str(u) for u, _ in cycle) + f" -> {cycle[0][0]}"
        raise GraphError(f"the causal graph has a cycle: {path}")
    return graph


def require_node(graph: nx.DiGraph, node: Hashable, what: str = "node") -> None:
    """Raise :class:`UnknownNodeError` when ``node`` is not in ``graph`` (lists a few known nodes)."""
    if node not in graph:
        known = ", ".join(repr(n) for n in list(graph.nodes)[:12])
        more = "" if graph.number_of_nodes() <= 12 else ", ..."
        raise UnknownNodeError(f"unknown {what} {node!r}; the graph's nodes are: {known}{more}")


def ordered_parents(graph: nx.DiGraph, node: Hashable) -> list[Hashable]:
    """Parents of ``node`` in a fixed order (the order they were added to the graph)."""
    return list(graph.predecessors(node))


def upstream_order(graph: nx.DiGraph, target: Hashable) -> list[Hashable]:
    """Ancestors of ``target`` and ``target`` itself in topological order (the players of an attribution)."""
    keep = nx.ancestors(graph, target) | {target}
    return [n for n in nx.topological_sort(graph) if n in keep]
