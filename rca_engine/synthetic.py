"""Synthetic latency data with known root causes, for tests and benchmarks (fault injection).

A random call DAG (caller -> callee); each service's latency is its own time plus the sum (sequential calls) or
the max (parallel calls) of its callees' latencies; own times are log-normal. Injecting a fault multiplies one
service's own time, so the true root cause is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from .graph import invert_call_graph


@dataclass
class LatencySystem:
    """A random service system: call graph, causal graph, structure per caller and own-time parameters."""

    call_graph: nx.DiGraph
    causal_graph: nx.DiGraph
    structure: dict[str, str]  # caller -> "sum" | "max"
    mu: dict[str, float]  # log-normal own-time parameters
    sigma: dict[str, float]
    entry: str

    def simulate(self, n: int, rng: np.random.Generator, fault: str | None = None,
                 factor: float = 1.0, add: float = 0.0) -> pd.DataFrame:
        """``n`` rows of node latencies; ``fault``'s own time is multiplied by ``factor`` plus ``add``."""
        order = list(nx.topological_sort(self.causal_graph))
        out: dict[str, np.ndarray] = {}
        for node in order:
            own = rng.lognormal(self.mu[node], self.sigma[node], n)
            if node == fault:
                own = own * factor + add
            callees = list(self.causal_graph.predecessors(node))
            if not callees:
                out[node] = own
            elif self.structure[node] == "sum":
                out[node] = own + np.sum([out[c] for c in callees], axis=0)
            else:
                out[node] = own + np.max([out[c] for c in callees], axis=0)
        return pd.DataFrame({v: out[v] for v in order})


def random_system(n_services: int, rng: np.random.Generator, max_callees: int = 3,
                  p_parallel: float = 0.3) -> LatencySystem:
    """A random connected call DAG with one entry point ``s0``; service i calls only services > i."""
    names = [f"s{i}" for i in range(n_services)]
    call = nx.DiGraph()
    call.add_nodes_from(names)
    for i in range(1, n_services):  # every service has a caller with a smaller index: one entry point
        call.add_edge(names[int(rng.integers(0, i))], names[i])
    for i in range(n_services - 1):
        extra = int(rng.integers(0, max_callees))
        for j in rng.choice(np.arange(i + 1, n_services), size=min(extra, n_services - i - 1), replace=False):
            call.add_edge(names[i], names[int(j)])
    causal = invert_call_graph(call)
    structure = {v: ("max" if rng.random() < p_parallel else "sum") for v in names if call.out_degree(v)}
    mu = {v: float(rng.uniform(-1.0, 1.0)) for v in names}
    sigma = {v: float(rng.uniform(0.2, 0.5)) for v in names}
    return LatencySystem(call, causal, structure, mu, sigma, names[0])
