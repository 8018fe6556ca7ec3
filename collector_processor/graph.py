"""The call graph of one entry point and its inversion into the causal graph of latencies."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx


@dataclass(frozen=True)
class NodeInfo:
    """Metadata of a node: who to blame (service), what it does (operation), how it was built (kind),
    and how its children's latencies combine into its own (``"sum"`` | ``"max"`` | ``None`` for leaves)."""

    service: str
    operation: str
    kind: str  # "span" | "call_gap" | "db" | "messaging"
    structure: str | None = None


@dataclass
class CallGraph:
    """Call graph of one entry point: ``call_edges`` are caller -> callee; the causal graph is inverted."""

    entry: str
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    call_edges: list[tuple[str, str]] = field(default_factory=list)
    traces: int = 0

    def causal_graph(self) -> nx.DiGraph:
        """Callee latency -> caller latency, with the node metadata as node attributes."""
        g = nx.DiGraph()
        for node, meta in self.nodes.items():
            g.add_node(node, service=meta.service, operation=meta.operation, kind=meta.kind,
                       structure=meta.structure)
        for caller, callee in self.call_edges:
            if caller != callee:
                g.add_edge(callee, caller)
        return g

    def mechanisms(self) -> dict[str, str]:
        """Node -> ``"sum"`` | ``"max"`` for every non-leaf node (rca_engine's ``mechanisms`` dict)."""
        return {n: m.structure for n, m in self.nodes.items() if m.structure is not None}


def infer_structure(has_children: bool, overlapping: int, sequential: int) -> str | None:
    """``"max"`` when the children of a node mostly ran in parallel, ``"sum"`` otherwise; None for leaves."""
    if not has_children:
        return None
    return "max" if overlapping > sequential else "sum"
