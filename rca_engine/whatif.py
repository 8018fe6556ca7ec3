"""What-if: the target statistic under an intervention on some nodes' own time (DoWhy's "intervention" scenario).

"If ``caching`` were 30 % faster, p99 of the entry would be ...": each intervened node's noise (its own time for
structural mechanisms) is scaled by a factor, or drawn from a baseline table instead of the current one; every
other node keeps its current noise, row by row (common random numbers), and the change propagates through the
mechanisms. The prediction is the observed statistic plus the simulated effect; its interval comes from
resampling the rows.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from .data import DEFAULT_MIN_ROWS
from .distribution_change import DEFAULT_NUM_SAMPLES, MAX_NUM_SAMPLES
from .errors import RCAError
from .model import MechanismSpec
from .periods import PeriodModels, balanced_indices
from .target_stats import TargetStatistic, target_statistic

Intervention = float | str  # a factor on the own time (0.7 = 30 % faster) or "baseline"


@dataclass
class WhatIfResult:
    """The target statistic now and under an intervention (in the target's unit)."""

    target: Hashable
    stat: str
    interventions: dict[Hashable, Intervention]
    current_value: float  # the statistic on the data
    predicted_value: float  # under the intervention
    interval: tuple[float, float] | None = None  # bootstrap interval of predicted_value
    per_node: dict[Hashable, float] = field(default_factory=dict)  # predicted value with each intervention alone
    rows: int = 0
    num_samples: int = 0
    seconds: float = 0.0

    @property
    def change(self) -> float:
        """Predicted minus current value."""
        return self.predicted_value - self.current_value

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (node ids as strings)."""
        return {
            "target": str(self.target),
            "stat": self.stat,
            "interventions": {str(k): v for k, v in self.interventions.items()},
            "current_value": self.current_value,
            "predicted_value": self.predicted_value,
            "change": self.change,
            "interval": list(self.interval) if self.interval else None,
            "per_node": {str(k): v for k, v in self.per_node.items()},
            "rows": self.rows,
            "num_samples": self.num_samples,
            "seconds": self.seconds,
        }


def what_if(graph: nx.DiGraph, data: pd.DataFrame, target: Hashable, interventions: Mapping[Any, Intervention],
            *, stat: str | float | TargetStatistic = "p99", threshold: float | None = None, baseline: pd.DataFrame | None = None,
            mechanisms: MechanismSpec | Mapping[Any, MechanismSpec] = "auto", intervals: int = 100,
            confidence: float = 0.95, num_samples: int | None = None, dropna: bool = False,
            min_rows: int = DEFAULT_MIN_ROWS, seed: int = 0) -> WhatIfResult:
    """``stat`` of ``target`` in ``data`` had ``interventions`` been applied: node -> factor on its own time
    (noise; 0.7 = 30 % faster, 0 = free) or "baseline" (its own time drawn from ``baseline`` instead, e.g. before a
    deploy). Nodes must be upstream of ``target`` (or the target itself). ``intervals`` bootstrap replicates give
    a ``confidence`` interval (0 = none). Mechanisms as in :func:`rca_engine.fit` (sum / max: exact and fast).
    """
    started = time.perf_counter()
    statistic = target_statistic(stat, threshold)
    if not isinstance(interventions, Mapping) or not interventions:
        raise RCAError("interventions must be a non-empty mapping node -> factor (e.g. 0.7) or 'baseline'")
    if intervals < 0 or intervals == 1:
        raise RCAError(f"intervals must be 0 or at least 2 bootstrap replicates, got {intervals}")
    if not 0.0 < confidence < 1.0:
        raise RCAError(f"confidence must be in (0, 1), got {confidence}")
    specs = {node: _spec(node, v) for node, v in interventions.items()}
    needs_baseline = any(v == "baseline" for v in specs.values())
    if needs_baseline and baseline is None:
        raise RCAError("an intervention 'baseline' needs the baseline table (baseline=...)")
    tables: list[pd.DataFrame] = [data] if baseline is None or not needs_baseline else [data, baseline]
    periods = PeriodModels(graph, target, tables, mechanisms, dropna=dropna, min_rows=min_rows, seed=seed,
                           names=["data", "baseline data"][:len(tables)])
    for node in specs:
        if node not in periods.nodes:
            raise RCAError(f"cannot intervene on {node!r}: it is not upstream of the target {target!r}")
    cols = [periods.nodes.index(n) for n in specs]
    n_rows = periods.values[0].shape[0]
    size = int(num_samples) if num_samples is not None else min(max(n_rows, DEFAULT_NUM_SAMPLES), MAX_NUM_SAMPLES)
    if not 100 <= size <= MAX_NUM_SAMPLES:
        raise RCAError(f"num_samples must be in 100..{MAX_NUM_SAMPLES:,}, got {num_samples}")
    rng = np.random.default_rng([seed, 53])
    idx = balanced_indices(n_rows, size, rng)
    idx_b = balanced_indices(periods.values[1].shape[0], size, rng) if needs_baseline else None

    def effects(rows: np.ndarray, rows_b: np.ndarray | None) -> np.ndarray:
        """[v(all interventions), v(each alone)...] - v(none), one vectorised simulation."""
        k = len(cols)
        coal = np.vstack([np.zeros(k, bool), np.ones(k, bool), np.eye(k, dtype=bool)]) if k > 1 else \
            np.array([[False], [True]])
        e0 = periods.noise[0]
        noise = [e0[rows, j] for j in range(len(periods.nodes))]
        f_period: list[np.ndarray | None] = [None] * len(noise)
        for c, how in enumerate(specs.values()):
            j = cols[c]
            if how == "baseline":
                other = periods.noise[1][rows_b, j]
                f_period[j] = coal[:, c].astype(int)
            else:
                other = noise[j] * float(how)
            noise[j] = np.where(coal[:, c][:, None], other[None, :], noise[j][None, :])
        target_values = periods.simulate(noise, f_period)
        values = np.asarray(statistic.of(target_values), dtype=float)
        return values[1:] - values[0]

    current = float(statistic.of(periods.values[0][:, -1]))
    eff = effects(idx, idx_b)
    interval = None
    if intervals:
        draws = []
        for b in range(int(intervals)):
            brng = np.random.default_rng([seed, 59, b])
            boot: np.ndarray = brng.integers(0, n_rows, size=(n_rows,))
            rows_b = None
            if idx_b is not None:
                n_b = periods.values[1].shape[0]
                boot_b: np.ndarray = brng.integers(0, n_b, size=(n_b,))
                rows_b = boot_b[idx_b]
            boot_current = float(statistic.of(periods.values[0][boot, -1]))
            draws.append(boot_current + effects(boot[idx], rows_b)[0])
        tail = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(draws, [tail, 1.0 - tail])
        interval = (float(lo), float(hi))
    per_node = {n: current + float(e) for n, e in zip(specs, eff[1:], strict=False)} if len(cols) > 1 else \
        {next(iter(specs)): current + float(eff[0])}
    return WhatIfResult(target=target, stat=statistic.name, interventions=dict(specs), current_value=current,
                        predicted_value=current + float(eff[0]), interval=interval, per_node=per_node, rows=n_rows,
                        num_samples=size, seconds=time.perf_counter() - started)


def _spec(node: Hashable, value: object) -> Intervention:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "baseline":
            return "baseline"
        if text.endswith("%"):  # "-30%" = 30 % faster, "+50%" = 50 % slower
            try:
                return _factor(node, 1.0 + float(text[:-1]) / 100.0)
            except ValueError:
                pass
        try:
            return _factor(node, float(text))
        except ValueError:
            raise RCAError(f"intervention on {node!r} must be a factor (e.g. 0.7), a change like '-30%' or "
                           f"'baseline', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RCAError(f"intervention on {node!r} must be a factor (e.g. 0.7) or 'baseline', got {value!r}")
    return _factor(node, float(value))


def _factor(node: Hashable, factor: float) -> float:
    if not np.isfinite(factor) or factor < 0 or factor > 1000:
        raise RCAError(f"intervention factor on {node!r} must be in [0, 1000], got {factor}")
    return factor
