"""plugin.causal_graph: the collector's call graph inverted by the engine's one inversion (callee latency ->
caller latency), nodes in order with their metadata, causes in call order, cycles refused."""

from __future__ import annotations

import networkx as nx
import pytest

import rca_engine
from collector_processor import CallGraph, NodeInfo
from plugin.causal_graph import causal_graph


def _shop() -> CallGraph:
    nodes = {
        "web:GET /checkout": NodeInfo("web", "GET /checkout", "span", "sum"),
        "net:cart:GET /cart": NodeInfo("cart", "GET /cart", "call_gap", "sum"),
        "cart:GET /cart": NodeInfo("cart", "GET /cart", "span", "max"),
        "redis:HGETALL": NodeInfo("redis", "HGETALL", "db"),
        "postgres:SELECT": NodeInfo("postgres", "SELECT", "db"),
        "web:render": NodeInfo("web", "render", "span"),
    }
    edges = [("cart:GET /cart", "postgres:SELECT"), ("cart:GET /cart", "redis:HGETALL"),
             ("net:cart:GET /cart", "cart:GET /cart"), ("web:GET /checkout", "net:cart:GET /cart"),
             ("web:GET /checkout", "web:render")]
    return CallGraph(entry="web:GET /checkout", nodes=nodes, call_edges=edges, traces=3)


def test_inverts_every_call_and_keeps_the_node_metadata() -> None:
    cg = _shop()
    causal = causal_graph(cg)
    assert list(causal.nodes) == list(cg.nodes)  # the call graph's node order
    assert set(causal.edges) == {(callee, caller) for caller, callee in cg.call_edges}
    assert list(causal.predecessors("cart:GET /cart")) == ["postgres:SELECT", "redis:HGETALL"]  # call order
    assert list(causal.predecessors("web:GET /checkout")) == ["net:cart:GET /cart", "web:render"]
    assert causal.nodes["cart:GET /cart"] == {"service": "cart", "operation": "GET /cart", "kind": "span",
                                              "structure": "max"}
    assert causal.nodes["redis:HGETALL"]["structure"] is None
    assert list(nx.topological_sort(causal))[-1] == cg.entry


def test_a_node_without_calls_stays_a_node_and_an_empty_graph_stays_empty() -> None:
    lone = CallGraph(entry="web:GET /", nodes={"web:GET /": NodeInfo("web", "GET /", "span")})
    assert list(causal_graph(lone).nodes) == ["web:GET /"] and causal_graph(lone).number_of_edges() == 0
    empty = causal_graph(CallGraph(entry="web:GET /"))
    assert empty.number_of_nodes() == 0


def test_a_cycle_is_refused_with_the_engine_error() -> None:
    cg = _shop()
    cg.call_edges.append(("postgres:SELECT", "web:GET /checkout"))
    with pytest.raises(rca_engine.GraphError, match="cycle"):
        causal_graph(cg)
