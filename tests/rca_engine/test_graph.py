"""rca_engine.graph.invert_call_graph with ``nodes``: nodes first in their order with their attributes, edges
in the order of the calls, so each node's causes keep the call order (the one inversion the product uses)."""

from __future__ import annotations

import pytest

import rca_engine


def test_nodes_come_first_with_their_attributes_and_causes_keep_call_order() -> None:
    calls = [("web", "cart"), ("web", "auth"), ("cart", "db")]
    nodes = [("web", {"kind": "span"}), ("auth", {"kind": "span"}), "cart", ("db", {"kind": "db"}), "lonely"]
    causal = rca_engine.invert_call_graph(calls, nodes=nodes)
    assert list(causal.nodes) == ["web", "auth", "cart", "db", "lonely"]
    assert causal.nodes["db"] == {"kind": "db"} and causal.nodes["cart"] == {}
    assert list(causal.edges) == [("auth", "web"), ("cart", "web"), ("db", "cart")]
    assert list(causal.predecessors("web")) == ["cart", "auth"]  # as called, not as the nodes were listed
    assert causal.degree("lonely") == 0


def test_nodes_alone_make_a_graph_and_a_self_call_is_refused() -> None:
    assert list(rca_engine.invert_call_graph([], nodes=["web"]).nodes) == ["web"]
    with pytest.raises(rca_engine.GraphError, match="no nodes"):
        rca_engine.invert_call_graph([])
    with pytest.raises(rca_engine.GraphError, match="self-loop"):
        rca_engine.invert_call_graph([("web", "web")], nodes=["web"])
