"""Why did the error rate change? Attribution of a change of the target's failure rate between two periods.

The failure model is :mod:`rca_engine.failures`' noisy-OR over the causal graph (callee -> caller): node ``v``
fails on its own with rate ``q_v`` or through a failing callee ``u`` with probability ``p_uv``. Both belong to
``v``'s mechanism P(F_v | callees' outcomes) -- its own failures and how it handles its callees' (retries,
fallbacks) -- so, as in "Why did the distribution change?" (Budhathoki et al., AISTATS 2021; the latency version is
:func:`rca_engine.distribution_change`), the players are the nodes whose mechanism changed between the baseline and
the comparison table. Each period's model is fitted with :func:`rca_engine.fit_failures`; a node changed when its
own-failure rate (its outcome on the requests where none of its callees failed) or the propagation from one of its
callees (its outcome when that callee alone failed) differs between the periods by Fisher's exact test
(Bonferroni within the node, Benjamini-Hochberg across nodes).

A coalition's value is the target's failure probability with the coalition's players taking their comparison
parameters and every other node its baseline ones. It is computed in closed form (exact when each upstream node
reaches the target by one path, a tree of calls), otherwise simulated with common random numbers (the same uniform
draws of every node's own failure and every edge's propagation for all coalitions). The Shapley values, in
percentage points, sum exactly to the modelled change v(all players) - v(none); the result also reports the
observed change, the unexplained remainder, bootstrap intervals (rows of both tables resampled, both models
refitted; a simulated game uses its first 20,000 requests per replicate) and the noise floor of the observed rate
(:func:`rca_engine.distribution_change.noise_floor`).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
from scipy import stats as sps

from . import shapley
from .distribution_change import RegressionResult, benjamini_hochberg, noise_floor, one_sided_calls
from .errors import RCAError
from .failures import MIN_FAILURE_ROWS, FailureModel, failure_table, fit_failures, noisy_or_marginals
from .graph import require_node, upstream_order, validate_graph
from .target_stats import target_statistic

STAT = "error_rate"
MAX_EXACT_PLAYERS = 10
DEFAULT_SIMULATION_SAMPLES = 100_000
_PP = 100.0  # probabilities -> percentage points
_INTERVAL_BUDGET = 60_000_000  # bootstrap replicates x coalitions x simulated requests
_CHUNK_ELEMENTS = 8_000_000  # coalitions x simulated requests per pass
_BOOTSTRAP_SAMPLES = 20_000  # simulated requests per bootstrap replicate (common random numbers: the first ones)


@dataclass
class ErrorRateChange(RegressionResult):
    """The attribution of a change of the target's error rate: every value in percent (rates) or percentage points
    (changes, contributions, intervals, noise floor). ``stat`` is ``"error_rate"``."""

    own_rates: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # changed node -> q (%) per period
    propagation: dict[Hashable, dict[Hashable, tuple[float, float]]] = field(default_factory=dict)  # node -> callee -> p (%)
    node_rates: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # changed node -> observed rate (%)
    computation: str = "closed_form"  # "closed_form" (exact on a tree of calls) | "simulated"

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(
            unit="percentage_points",
            own_rates={str(k): list(v) for k, v in self.own_rates.items()},
            propagation={str(k): {str(u): list(p) for u, p in v.items()} for k, v in self.propagation.items()},
            node_rates={str(k): list(v) for k, v in self.node_rates.items()},
            computation=self.computation,
        )
        return out


@dataclass
class _Params:
    """One period's noisy-OR parameters over the upstream nodes (topological order)."""

    own: np.ndarray  # (n,)
    prop: list[np.ndarray]  # per node: (len(parents),)

    @classmethod
    def of(cls, model: FailureModel, nodes: list[Hashable]) -> _Params:
        mech = [model.mechanisms[v] for v in nodes]
        return cls(np.array([m.own_rate for m in mech]), [np.array(m.propagation, dtype=float) for m in mech])


class _Game:
    """v(S) = P(target fails) with S's players at their comparison parameters (probability, not pp)."""

    def __init__(self, parents: list[list[int]], players: list[int], p0: _Params, p1: _Params,
                 uniforms: tuple[np.ndarray, list[np.ndarray]] | None) -> None:
        self.parents = parents
        self.players = players
        self.p0, self.p1 = p0, p1
        self.uniforms = uniforms  # None: closed form; else (own draws (N, n), per-node edge draws (N, k))
        # simulated: nodes downstream of no player fail alike in every coalition (simulated once, on first use)
        affected = np.zeros(len(parents), bool)
        affected[players] = True
        for j, ps in enumerate(parents):
            affected[j] |= any(affected[u] for u in ps)
        self.affected = affected
        self._fixed: dict[int, np.ndarray] = {}

    def value(self, coal: np.ndarray) -> np.ndarray:
        coal = np.atleast_2d(np.asarray(coal, dtype=bool))
        n = len(self.parents)
        mask = np.zeros((coal.shape[0], n), bool)
        mask[:, self.players] = coal
        own = np.where(mask, self.p1.own[None, :], self.p0.own[None, :])
        prop = [np.where(mask[:, j:j + 1], self.p1.prop[j][None, :], self.p0.prop[j][None, :]) for j in range(n)]
        if self.uniforms is None:
            return noisy_or_marginals(self.parents, own, prop)[:, -1]
        u_own, u_edge = self.uniforms
        size = u_own.shape[0]
        step = max(1, _CHUNK_ELEMENTS // (size * max(int(self.affected.sum()), 1)))
        out = []
        for lo in range(0, coal.shape[0], step):
            hi = lo + step
            failed: list[np.ndarray] = []
            for j, ps in enumerate(self.parents):
                if not self.affected[j] and j in self._fixed:
                    failed.append(self._fixed[j])
                    continue
                f = u_own[None, :, j] < own[lo:hi, j, None]
                for i, u in enumerate(ps):
                    f = f | (failed[u] & (u_edge[j][None, :, i] < prop[j][lo:hi, i, None]))
                if not self.affected[j]:  # the same in every coalition: keep one row
                    f = self._fixed.setdefault(j, f[:1])
                failed.append(f)
            out.append(np.broadcast_to(failed[-1], (min(hi, coal.shape[0]) - lo, size)).mean(axis=1))
        return np.concatenate(out)

    def shapley(self, method: str, rng: np.random.Generator, max_permutations: int
                ) -> tuple[np.ndarray, float, float, int]:
        """(Shapley values, v(none), v(all), permutations used), probabilities."""
        return shapley.of_game(self.value, len(self.players), method, rng, max_permutations)


def is_tree(graph: nx.DiGraph, nodes: list[Hashable]) -> bool:
    """Whether every node but the last (the target) has exactly one successor among ``nodes``: one path each."""
    keep = set(nodes)
    return all(sum(1 for w in graph.successors(v) if w in keep) == 1 for v in nodes[:-1])


def mechanism_change_test(graph: nx.DiGraph, nodes: list[Hashable], before: np.ndarray, after: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Raw p-value per node that its failure mechanism changed, with the parts: the own-rate test (its outcome on
    the rows where none of its callees failed) and one propagation test per callee (its outcome on the rows where
    that callee alone failed); Fisher's exact test each, Bonferroni-combined within the node. A part without rows
    in one period cannot be compared and gets p = 1."""
    index = {n: i for i, n in enumerate(nodes)}
    combined = np.ones(len(nodes))
    own_p = np.ones(len(nodes))
    prop_p: list[np.ndarray] = []
    for j, v in enumerate(nodes):
        ps = [index[u] for u in graph.predecessors(v) if u in index]
        parts = []
        for rows0, rows1 in _conditions(before, after, ps):
            parts.append(_fisher(before[rows0, j], after[rows1, j]))
        own_p[j] = parts[0]
        prop_p.append(np.array(parts[1:]))
        combined[j] = min(1.0, len(parts) * min(parts))
    return combined, own_p, prop_p


def _conditions(before: np.ndarray, after: np.ndarray, parents: list[int]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row masks of both periods: none of the parents failed, then each parent alone failed."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    pf0, pf1 = before[:, parents], after[:, parents]
    out.append((np.asarray(~pf0.any(axis=1)), np.asarray(~pf1.any(axis=1))))
    alone0, alone1 = pf0.sum(axis=1) == 1, pf1.sum(axis=1) == 1
    for i in range(len(parents)):
        out.append((np.asarray(alone0 & pf0[:, i]), np.asarray(alone1 & pf1[:, i])))
    return out


def _fisher(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 or b.size == 0:
        return 1.0
    k0, k1 = int(a.sum()), int(b.sum())
    if k0 + k1 == 0 or k0 + k1 == a.size + b.size:
        return 1.0
    return float(sps.fisher_exact([[k0, a.size - k0], [k1, b.size - k1]]).pvalue)


def error_rate_change(graph: nx.DiGraph, baseline: pd.DataFrame, comparison: pd.DataFrame, target: Hashable, *,
                      alpha: float = 0.05, players: list[Hashable] | None = None, intervals: int = 50,
                      confidence: float = 0.95, method: str = "auto", computation: str = "auto",
                      num_samples: int = DEFAULT_SIMULATION_SAMPLES, max_permutations: int = 256,
                      prior_strength: float = 1.0, min_rows: int = MIN_FAILURE_ROWS, seed: int = 0
                      ) -> ErrorRateChange:
    """Attribute the change of ``target``'s error rate from ``baseline`` to ``comparison`` to the nodes whose failure
    mechanism (own-failure rate, or propagation of a callee's failure) changed.

    ``graph``: cause -> effect DAG (callee -> caller); both tables have one column per upstream node of ``target``:
    0/1, booleans or error counts (> 0 = failed; a column missing from one table is a call of the other period only
    and counts as never failing there). ``alpha``: false discovery rate of the per-node change test; ``players``
    overrides it with a fixed list. ``intervals``: bootstrap replicates (0 = none). ``method``: Shapley "exact"
    ("auto": up to 10 players) or "permutation". ``computation``: "closed_form" (exact on a tree of calls, the
    independence approximation otherwise), "simulated" (``num_samples`` requests, common random numbers) or
    "auto" (closed form on a tree, else simulated). ``prior_strength`` and ``min_rows`` as in
    :func:`rca_engine.fit_failures`. Values in percent / percentage points.
    """
    started = time.perf_counter()
    _check(alpha, intervals, confidence, method, computation, num_samples)
    validate_graph(graph)
    require_node(graph, target, "target")
    nodes = upstream_order(graph, target)
    sub = graph.subgraph(nodes).copy()
    baseline, comparison = one_sided_calls(graph, target, baseline, comparison)
    before, after = failure_table(baseline, nodes), failure_table(comparison, nodes)
    m0 = fit_failures(sub, pd.DataFrame(before, columns=nodes), prior_strength=prior_strength, min_rows=min_rows)
    m1 = fit_failures(sub, pd.DataFrame(after, columns=nodes), prior_strength=prior_strength, min_rows=min_rows)
    index = {n: i for i, n in enumerate(nodes)}
    parents = [[index[u] for u in m0.mechanisms[v].parents] for v in nodes]

    raw, own_p, prop_p = mechanism_change_test(sub, nodes, before, after)
    adjusted = benjamini_hochberg(raw)
    if players is None:
        chosen = [j for j in range(len(nodes)) if adjusted[j] <= alpha]
    else:
        unknown = [p for p in players if p not in index]
        if unknown:
            raise RCAError(f"players {unknown[:5]!r} are not upstream of {target!r}")
        chosen = sorted({index[p] for p in players})
    use_exact = method == "exact" or (method == "auto" and len(chosen) <= MAX_EXACT_PLAYERS)
    if use_exact and len(chosen) > 20:
        raise RCAError(f"exact Shapley values for {len(chosen)} players need 2^{len(chosen)} coalitions; "
                       "use method='permutation'")
    closed = computation == "closed_form" or (computation == "auto" and is_tree(sub, nodes))
    rng = np.random.default_rng([seed, 53])
    uniforms = None if closed else (rng.random((num_samples, len(nodes))),
                                    [rng.random((num_samples, len(p))) for p in parents])
    game = _Game(parents, chosen, _Params.of(m0, nodes), _Params.of(m1, nodes), uniforms)
    shapley_method = "exact" if use_exact else "permutation"
    phi, v0, v1, used = game.shapley(shapley_method, rng, max_permutations)

    names = [nodes[j] for j in chosen]
    y0, y1 = before[:, -1], after[:, -1]
    base_value, comp_value = float(y0.mean()), float(y1.mean())
    cf = comp_value + (game.value(~np.eye(len(chosen), dtype=bool)) - v1) if chosen else np.empty(0)

    lo_hi: dict[Hashable, tuple[float, float]] = {}
    change_interval = None
    if intervals and chosen:
        per_run = (2 ** len(chosen) if use_exact else max(used, 32) * len(chosen)) * \
            (1 if closed else min(num_samples, _BOOTSTRAP_SAMPLES))
        reps = int(min(intervals, max(2, _INTERVAL_BUDGET // max(per_run, 1))))
        draws, totals = _bootstrap(sub, nodes, parents, chosen, before, after, _head(uniforms, _BOOTSTRAP_SAMPLES),
                                   reps, shapley_method, seed, max_permutations, prior_strength)
        tail = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=0) * _PP
        lo_hi = {nm: (float(lo[i]), float(hi[i])) for i, nm in enumerate(names)}
        tl, th = np.quantile(totals, [tail, 1.0 - tail]) * _PP
        change_interval = (float(tl), float(th))

    sign = 1.0 if v1 - v0 >= 0 else -1.0
    order = np.argsort(-sign * phi, kind="stable") if chosen else np.empty(0, dtype=int)
    kinds = {nodes[j]: _kind(own_p[j], prop_p[j]) for j in chosen}
    own_rates = {nodes[j]: (m0.mechanisms[nodes[j]].own_rate * _PP, m1.mechanisms[nodes[j]].own_rate * _PP)
                 for j in chosen}
    propagation = {nodes[j]: {u: (a * _PP, b * _PP) for u, a, b in zip(m0.mechanisms[nodes[j]].parents,
                                                                        m0.mechanisms[nodes[j]].propagation,
                                                                        m1.mechanisms[nodes[j]].propagation,
                                                                        strict=True)}
                   for j in chosen if parents[j]}
    floor = noise_floor(y0.astype(float), target_statistic("mean"), y0.size, y1.size, seed=seed,
                        confidence=confidence)
    return ErrorRateChange(
        target=target, stat=STAT, baseline_value=base_value * _PP, comparison_value=comp_value * _PP,
        observed_change=(comp_value - base_value) * _PP, modelled_change=(v1 - v0) * _PP,
        contributions={names[i]: float(phi[i]) * _PP for i in order},
        intervals={names[i]: lo_hi[names[i]] for i in order if names[i] in lo_hi},
        change_interval=change_interval,
        counterfactuals={names[i]: float(cf[i]) * _PP for i in order},
        p_values={nodes[j]: float(adjusted[j]) for j in range(len(nodes))},
        kinds={names[i]: kinds[names[i]] for i in order},
        noise_floor=floor * _PP, baseline_rows=int(y0.size), comparison_rows=int(y1.size),
        num_samples=0 if closed else num_samples, method=shapley_method, num_permutations=used, alpha=alpha,
        seed=seed, seconds=time.perf_counter() - started,
        own_rates={names[i]: own_rates[names[i]] for i in order},
        propagation={names[i]: propagation[names[i]] for i in order if names[i] in propagation},
        node_rates={names[i]: (float(before[:, chosen[i]].mean()) * _PP, float(after[:, chosen[i]].mean()) * _PP)
                    for i in order},
        computation="closed_form" if closed else "simulated",
    )


def _head(uniforms: tuple[np.ndarray, list[np.ndarray]] | None, size: int
          ) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """The first ``size`` simulated requests (the bootstrap's replicates need the spread, not the last digit)."""
    if uniforms is None:
        return None
    return uniforms[0][:size], [e[:size] for e in uniforms[1]]


def _kind(own_p: float, prop_p: np.ndarray) -> str:
    """Which part of the mechanism moved most surely: ``own_rate`` or ``propagation``."""
    return "propagation" if prop_p.size and float(prop_p.min()) < own_p else "own_rate"


def _bootstrap(graph: nx.DiGraph, nodes: list[Hashable], parents: list[list[int]], chosen: list[int],
               before: np.ndarray, after: np.ndarray, uniforms: tuple[np.ndarray, list[np.ndarray]] | None,
               reps: int, method: str, seed: int, max_permutations: int, prior_strength: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Contributions and modelled change (probabilities) over ``reps`` replicates: both tables' rows resampled,
    both models refitted, the players and the random numbers kept."""
    draws, totals = [], []
    for b in range(reps):
        rng = np.random.default_rng([seed, 59, b])
        r0 = before[rng.integers(0, before.shape[0], before.shape[0])]
        r1 = after[rng.integers(0, after.shape[0], after.shape[0])]
        m0 = fit_failures(graph, pd.DataFrame(r0, columns=nodes), prior_strength=prior_strength, min_rows=1)
        m1 = fit_failures(graph, pd.DataFrame(r1, columns=nodes), prior_strength=prior_strength, min_rows=1)
        game = _Game(parents, chosen, _Params.of(m0, nodes), _Params.of(m1, nodes), uniforms)
        phi, v0, v1, _ = game.shapley(method, rng, max_permutations)
        draws.append(phi)
        totals.append(v1 - v0)
    return np.array(draws), np.array(totals)


def _check(alpha: float, intervals: int, confidence: float, method: str, computation: str, num_samples: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise RCAError(f"alpha must be in (0, 1), got {alpha}")
    if method not in ("auto", "exact", "permutation"):
        raise RCAError(f"method must be 'auto', 'exact' or 'permutation', got {method!r}")
    if computation not in ("auto", "closed_form", "simulated"):
        raise RCAError(f"computation must be 'auto', 'closed_form' or 'simulated', got {computation!r}")
    if isinstance(intervals, bool) or not isinstance(intervals, (int, np.integer)) or intervals < 0 or intervals == 1:
        raise RCAError(f"intervals must be 0 or at least 2 bootstrap replicates, got {intervals!r}")
    if not 0.0 < confidence < 1.0:
        raise RCAError(f"confidence must be in (0, 1), got {confidence}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or \
            not 1_000 <= num_samples <= 2_000_000:
        raise RCAError(f"num_samples must be an integer in 1,000..2,000,000, got {num_samples!r}")
