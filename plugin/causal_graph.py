"""The causal graph of an entry point: the collector's call graph inverted by the engine (the one inversion)."""

from __future__ import annotations

from dataclasses import asdict

import networkx as nx

import rca_engine
from collector_processor import CallGraph


def causal_graph(graph: CallGraph) -> nx.DiGraph:
    """Callee latency -> caller latency, nodes in the call graph's order with their metadata (service,
    operation, kind, structure) as attributes; an empty graph (an entry point with no stored traces) stays empty.
    Raises ``rca_engine.GraphError`` on a cycle (a store must drop the edges that close one)."""
    if not graph.nodes and not graph.call_edges:
        return nx.DiGraph()
    return rca_engine.invert_call_graph(graph.call_edges,
                                        nodes=[(node, asdict(info)) for node, info in graph.nodes.items()])
