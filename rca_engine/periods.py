"""Two periods over one causal graph: fitted mechanisms, reconstructed noise, and batched simulation of mixtures.

A *period* is a table of observations (one column per node). Each node's mechanism is x = f(parents) + noise.
With structural mechanisms ("sum" / "max" of the callees, roots empirical) f is the same in every period and a
node's noise is its own time, so a period is fully described by its noise rows. With learned mechanisms each
period gets its own fitted f as well (a changed mechanism is f and noise together).

:meth:`PeriodModels.simulate` propagates many *coalitions* at once: per node, which period's noise (and f) each
coalition uses. Every coalition shares the same resampled row indices (common random numbers), so differences
between coalitions come from the choice of period only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from .data import DEFAULT_MIN_ROWS, training_matrix
from .errors import RCAError
from .graph import require_node, upstream_order, validate_graph
from .model import CausalModel, MechanismSpec, fit

STRUCTURAL = ("empirical", "sum", "max")


class PeriodModels:
    """Mechanisms and noise rows of ``target``'s upstream nodes in each of several periods (tables)."""

    def __init__(self, graph: nx.DiGraph, target: Hashable, tables: Sequence[pd.DataFrame],
                 mechanisms: MechanismSpec | Mapping[Any, MechanismSpec] = "auto", *, dropna: bool = False,
                 min_rows: int = DEFAULT_MIN_ROWS, seed: int = 0, names: Sequence[str] = ()) -> None:
        validate_graph(graph)
        require_node(graph, target, "target")
        if not tables:
            raise RCAError("at least one table is needed")
        self.target = target
        upstream = upstream_order(graph, target)
        sub = graph.subgraph(upstream).copy()
        if isinstance(mechanisms, Mapping):
            mechanisms = {n: s for n, s in mechanisms.items() if n in sub}
        names = list(names) or [f"table {i + 1}" for i in range(len(tables))]
        first_values = training_matrix(_checked(tables[0], names[0]), list(nx.topological_sort(sub)), dropna=dropna,
                                       min_rows=min_rows, what=names[0])  # errors name the table
        first = fit(sub, tables[0], mechanisms, dropna=dropna, min_rows=min_rows, seed=seed)
        self.nodes: list[Hashable] = first.nodes
        self.parent_idx = first.parent_idx
        self.structural = all(m.name in STRUCTURAL for m in first.mechanisms.values())
        self.models: list[CausalModel] = [first]
        self.values: list[np.ndarray] = [first_values]
        for table, name in zip(tables[1:], names[1:], strict=False):
            vals = training_matrix(_checked(table, name), self.nodes, dropna=dropna, min_rows=min_rows, what=name)
            self.values.append(vals)
            if self.structural:
                self.models.append(first)
            else:
                self.models.append(fit(sub, table, mechanisms, dropna=dropna, min_rows=min_rows, seed=seed))
        # noise of each period's rows under its own period's mechanisms (structural: the own time)
        self.noise = [m.noise_of(v, self.nodes) for m, v in zip(self.models, self.values, strict=False)]

    @property
    def target_index(self) -> int:
        return len(self.nodes) - 1

    def residuals(self, period: int, under: int = 0) -> np.ndarray:
        """Noise of ``period``'s rows under period ``under``'s mechanisms (what a changed-mechanism test compares)."""
        if self.structural or period == under:
            return self.noise[period]
        return self.models[under].noise_of(self.values[period], self.nodes)

    def mechanism_names(self) -> dict[Hashable, str]:
        """The mechanism used per node (in the first period)."""
        return self.models[0].mechanism_names()

    def simulate(self, noise: Sequence[np.ndarray], f_period: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """Target values for a batch: ``noise[j]`` is node j's noise, shape (samples,) when every coalition shares
        it or (coalitions, samples); ``f_period[j]`` (learned mechanisms only) the period whose f each coalition
        uses, an int array (coalitions,), or None for the first period's f. Returns (coalitions, samples), or
        (samples,) when nothing varies."""
        values: list[np.ndarray] = []
        for j in range(len(self.nodes)):
            cols = [values[p] for p in self.parent_idx[j]]
            shape = np.broadcast_shapes(noise[j].shape, *(c.shape for c in cols))
            which = None if f_period is None else f_period[j]
            if which is None or self.structural or not np.any(which):
                mech = self.models[0].mechanisms[self.nodes[j]]
                scratch = np.array(np.broadcast_to(noise[j], shape), dtype=float)
                values.append(mech.evaluate_columns([np.broadcast_to(c, shape) for c in cols], scratch))
                continue
            shape = (len(which), shape[-1]) if len(shape) == 1 else shape
            out = np.array(np.broadcast_to(noise[j], shape), dtype=float)
            bcols = [np.broadcast_to(c, shape) for c in cols]
            f = np.zeros(shape)
            for period in np.unique(which):
                rows = which == period
                mech = self.models[int(period)].mechanisms[self.nodes[j]]
                f[rows] = mech.evaluate_columns([c[rows] for c in bcols], np.zeros((int(rows.sum()), shape[-1])))
            out += f
            values.append(out)
        return values[-1]


def balanced_indices(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` row indices of ``n`` rows in random order, every row as often as possible equally (balanced
    resampling: with ``size`` a multiple of ``n`` the resample has exactly the table's distribution)."""
    return rng.permutation(np.resize(np.arange(n), size))


def _checked(table: object, name: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise RCAError(f"{name} must be a pandas DataFrame with one column per node, got {type(table).__name__}")
    return table
