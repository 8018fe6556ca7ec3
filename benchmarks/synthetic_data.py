"""Synthetic call graphs with known root causes and controlled difficulty.

A random call tree (plus a few shared callees, so a DAG) rooted at the entry node ``s0``. Every node has a
log-normal own time; a caller's latency is its own time plus the sum (sequential calls) or the max (parallel
calls) of its callees' latencies. A cache-like node skips its calls with probability ``cache_hit`` (latency =
own time only), a non-linear mechanism that the sum/max structure does not describe. A fault adds
``magnitude`` x the entry latency's standard deviation to the own time of one (or two) node(s).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Setting:
    """One difficulty setting of the suite."""

    name: str
    n_nodes: int = 20
    magnitude: float = 3.0
    parallel: float = 0.0  # fraction of callers that call in parallel (max)
    cache_hit: float = 0.0  # probability that a cache-like caller skips its callees
    cache_frac: float = 0.0  # fraction of callers that are cache-like
    n_causes: int = 1
    n_train: int = 1000
    extra_edges: float = 0.1  # shared callees, as a fraction of the node count


@dataclass
class World:
    call_graph: nx.DiGraph  # caller -> callee
    structure: dict[str, str]  # caller -> "sum" | "max"
    cache: dict[str, float]  # caller -> hit probability (cache-like callers only)
    own_mu: dict[str, float]
    own_sigma: dict[str, float]
    target: str

    @property
    def causal_graph(self) -> nx.DiGraph:
        g = self.call_graph.reverse(copy=True)
        for n in g:
            g.nodes[n]["service"] = n
        return g

    @property
    def order(self) -> list[str]:
        """Callees before callers."""
        return list(nx.topological_sort(self.causal_graph))


def make_world(s: Setting, rng: np.random.Generator) -> World:
    nodes = [f"s{i}" for i in range(s.n_nodes)]
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for i in range(1, s.n_nodes):
        g.add_edge(nodes[int(rng.integers(0, i))], nodes[i])
    for _ in range(int(round(s.extra_edges * s.n_nodes))):
        a, b = sorted(rng.choice(s.n_nodes, size=2, replace=False))
        if a != b:
            g.add_edge(nodes[a], nodes[b])
    callers = [n for n in nodes if g.out_degree(n) > 0]
    structure = {n: ("max" if rng.random() < s.parallel else "sum") for n in callers}
    cache = {n: s.cache_hit for n in callers if s.cache_hit > 0 and rng.random() < s.cache_frac}
    own_mu = {n: float(np.log(rng.uniform(1.0, 20.0))) for n in nodes}
    own_sigma = {n: float(rng.uniform(0.2, 0.5)) for n in nodes}
    return World(g, structure, cache, own_mu, own_sigma, nodes[0])


def sample(w: World, n: int, rng: np.random.Generator, extra_own: dict[str, float] | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` traces: (node latencies, own times), one column per node, in ms."""
    own = {v: rng.lognormal(w.own_mu[v], w.own_sigma[v], size=n) for v in w.call_graph}
    for v, d in (extra_own or {}).items():
        own[v] = own[v] + d
    lat: dict[str, np.ndarray] = {}
    for v in w.order:
        callees = list(w.call_graph.successors(v))
        x = own[v].copy()
        if callees:
            stack = np.vstack([lat[c] for c in callees])
            calls = stack.max(axis=0) if w.structure[v] == "max" else stack.sum(axis=0)
            if v in w.cache:
                calls = calls * (rng.random(n) >= w.cache[v])
            x = x + calls
        lat[v] = x
    cols = list(w.call_graph.nodes)
    return pd.DataFrame({c: lat[c] for c in cols}), pd.DataFrame({c: own[c] for c in cols})


@dataclass
class Case:
    causes: list[str]
    latencies: pd.Series
    own: pd.Series


def make_cases(w: World, s: Setting, normal: pd.DataFrame, n_cases: int, rng: np.random.Generator) -> list[Case]:
    """Faulty traces: ``magnitude`` x std(entry latency) added to the own time of random node(s)."""
    delta = s.magnitude * float(normal[w.target].std())
    nodes = list(w.call_graph.nodes)
    cases = []
    for _ in range(n_cases):
        causes = [str(c) for c in rng.choice(nodes, size=s.n_causes, replace=False)]
        lat, own = sample(w, 1, rng, {c: delta for c in causes})
        cases.append(Case(causes, lat.iloc[0], own.iloc[0]))
    return cases

