"""The call structure of a period as players of a distribution change: how often each node is called per request.

A node's own time per request is (number of its calls) x (own time per call). Between two periods either factor
can change: the code of the callee got slower (per-call time), or the caller calls it more often, for the first
time, or no more (call count). The two are separate players of the change attribution: the node, and the call
edge (caller -> callee) named by :class:`CallEdge`. Without explicit counts, a node that is absent throughout one
period is a call made in the other period only (its count per request is 0 or 1).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd

from .errors import RCAError


@dataclass(frozen=True)
class CallEdge:
    """The calls of ``callee`` by its ``callers`` (all of them when it has several) as one player."""

    callers: tuple[Hashable, ...]
    callee: Hashable

    def __str__(self) -> str:
        return f"{'+'.join(map(str, self.callers))}→{self.callee}"


@dataclass
class CallSplit:
    """Per period: each split node's calls per request (rows x split nodes) and own time per call (imputed where
    a row has no call, by a row of the same period that has one: it multiplies 0 calls, but another period's count
    may call it there)."""

    columns: list[int]  # node indices (into the period models' nodes) whose own time is split
    edges: list[CallEdge]  # the edge player of each split node
    counts: list[np.ndarray]  # per period (rows x split nodes)
    per_call: list[np.ndarray]  # per period (rows x split nodes)
    called: list[np.ndarray]  # per period: rows x split nodes, True where the node was called


def call_edge(graph: nx.DiGraph, node: Hashable, upstream: Sequence[Hashable]) -> CallEdge:
    """The edge player of ``node``: its callers are its effects in the causal graph (callee -> caller) that are
    upstream of the target too."""
    keep = set(upstream)
    callers = tuple(c for c in graph.successors(node) if c in keep)
    return CallEdge(callers=callers, callee=node)


def count_matrices(call_counts: Sequence[pd.DataFrame] | None, nodes: list[Hashable], own: Sequence[np.ndarray],
                   values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Calls per request of every node in each period (rows x nodes): the given tables (missing columns: 0), or
    presence (latency != 0) for a node absent throughout one period and 1 elsewhere."""
    if call_counts is None:
        absent = [np.all(v == 0, axis=0) for v in values]
        one_sided = np.logical_xor(absent[0], absent[1])
        out = []
        for v in values:
            c = np.ones_like(v, dtype=float)
            c[:, one_sided] = (v[:, one_sided] != 0).astype(float)
            out.append(c)
        return out
    if not isinstance(call_counts, (list, tuple)) or len(call_counts) != len(own):
        raise RCAError("call_counts must be a pair of DataFrames (baseline counts, comparison counts)")
    out = []
    for table, o, name in zip(call_counts, own, ("baseline", "comparison"), strict=False):
        if not isinstance(table, pd.DataFrame):
            raise RCAError(f"the {name} call counts must be a DataFrame, got {type(table).__name__}")
        if len(table) != o.shape[0]:
            raise RCAError(f"the {name} call counts have {len(table)} rows, the {name} table {o.shape[0]}: "
                           "one row per request in the same order")
        try:
            c = table.reindex(columns=nodes, fill_value=0.0).to_numpy(dtype=float)
        except (TypeError, ValueError) as exc:
            raise RCAError(f"the {name} call counts must be numbers: {exc}") from None
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise RCAError(f"the {name} call counts must be finite and >= 0")
        bad = np.flatnonzero(np.any((c == 0) & (o != 0), axis=0))
        if bad.size:
            raise RCAError(f"{[nodes[j] for j in bad[:5]]!r} have own time in requests that count no call of "
                           f"them in the {name} call counts")
        out.append(c)
    return out


def split_calls(columns: list[int], edges: list[CallEdge], own: Sequence[np.ndarray], counts: Sequence[np.ndarray],
                rng: np.random.Generator) -> CallSplit:
    """Split the own time of ``columns`` into calls per request and own time per call, period by period."""
    per_call, cnt, called = [], [], []
    for o, c in zip(own, counts, strict=False):
        cc = c[:, columns]
        oo = o[:, columns]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(cc > 0, oo / np.where(cc > 0, cc, 1.0), np.nan)
        per_call.append(u)
        cnt.append(cc)
        called.append(cc > 0)
    for k in range(len(columns)):
        for p, u in enumerate(per_call):
            missing = ~called[p][:, k]
            if not missing.any():
                continue
            donors = [q for q in (p, *range(len(per_call))) if called[q][:, k].any()]
            if not donors:  # never called in any period
                u[missing, k] = 0.0
                continue
            q = donors[0]  # the period's own per-call times, else another period's (a call of one period only)
            pool = per_call[q][called[q][:, k], k]
            u[missing, k] = pool[rng.integers(0, pool.size, size=int(missing.sum()))]
    return CallSplit(columns=columns, edges=edges, counts=cnt, per_call=per_call, called=called)
