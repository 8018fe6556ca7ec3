"""Why did the target's distribution change? Attribution of a change of a target statistic between two periods.

Budhathoki et al., "Why did the distribution change?" (AISTATS 2021); DoWhy's ``gcm.distribution_change``.
Players are the nodes whose noise (own time) -- or, for learned mechanisms, mechanism -- changed between the
baseline and the comparison table, found by a two-sample test per node with Benjamini-Hochberg correction.
A coalition's value is the target statistic (mean, a quantile, a tail probability) simulated with the
coalition's players drawing their noise (and f) from the comparison period and every other node from the
baseline. All coalitions share the same balanced resample of row indices (common random numbers), so the
per-node Shapley values sum exactly to the modelled change v(all players) - v(none).

With structural mechanisms (sum / max of callees) a node's noise is its own time and the simulation of the
empty coalition reproduces the baseline exactly, so the modelled change differs from the observed one only by
the changes of nodes that were not significant.

The call structure is a player too (structural mechanisms): a node's own time per request is its number of calls
times its own time per call, and a changed call count -- a call made in one period only, or made more or less
often per request (``call_counts``) -- is a player of its own, the :class:`CallEdge` caller -> callee, whose
coalition value switches the node's calls per request to the comparison period while the own time per call stays
where the node player puts it. The node itself is then a player only if its own time *per call* changed.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

from . import shapley
from .call_structure import CallEdge, CallSplit, call_edge, count_matrices, split_calls
from .data import DEFAULT_MIN_ROWS
from .errors import RCAError
from .model import MechanismSpec
from .periods import PeriodModels, balanced_indices
from .target_stats import TargetStatistic, target_statistic

MAX_EXACT_PLAYERS = 10
DEFAULT_NUM_SAMPLES = 2000
MAX_NUM_SAMPLES = 200_000
TAIL_TEST_QUANTILE = 0.9  # the exceedance test counts values above the baseline's 90th percentile
# bootstrap replicates x coalitions x samples that intervals may cost (sampled Shapley gets fewer replicates)
_INTERVAL_BUDGET = 60_000_000
_CHUNK_ELEMENTS = 4_000_000  # coalitions x samples simulated per pass (bounds memory)


@dataclass
class RegressionResult:
    """The attribution of a change of ``stat`` of ``target`` (values in the target's unit, e.g. ms; tail
    statistics in probability)."""

    target: Hashable
    stat: str
    baseline_value: float  # the statistic on the baseline table
    comparison_value: float  # ... and on the comparison table
    observed_change: float  # comparison_value - baseline_value
    modelled_change: float  # v(all changed nodes) - v(none): what the contributions sum to
    contributions: dict[Hashable, float]  # changed node or CallEdge -> Shapley value, ranked (largest share first)
    intervals: dict[Hashable, tuple[float, float]] = field(default_factory=dict)  # bootstrap, per contribution
    change_interval: tuple[float, float] | None = None  # bootstrap interval of the modelled change
    counterfactuals: dict[Hashable, float] = field(default_factory=dict)  # statistic had only this node not changed
    p_values: dict[Hashable, float] = field(default_factory=dict)  # BH-adjusted, every tested node
    kinds: dict[Hashable, str] = field(default_factory=dict)  # changed node -> "new" | "gone" | "changed"
    noise_floor: float = 0.0  # |change| two resamples of the baseline reach 95 % of the time
    baseline_rows: int = 0
    comparison_rows: int = 0
    num_samples: int = 0
    method: str = "exact"
    num_permutations: int = 0
    alpha: float = 0.05
    seed: int = 0
    seconds: float = 0.0

    @property
    def unexplained(self) -> float:
        """Observed minus modelled change: the nodes not found changed, and model error."""
        return self.observed_change - self.modelled_change

    @property
    def root_causes(self) -> list[Hashable]:
        """Changed nodes and call edges, largest contribution in the direction of the change first."""
        return list(self.contributions)

    @property
    def edges(self) -> list[CallEdge]:
        """The call edges among the players (a new, removed or more / less often made call)."""
        return [k for k in self.contributions if isinstance(k, CallEdge)]

    @property
    def significant(self) -> bool:
        """A change beyond resampling noise: some node changed and |observed change| exceeds the noise floor."""
        return bool(self.contributions) and abs(self.observed_change) > self.noise_floor

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (node ids as strings)."""
        return {
            "target": str(self.target),
            "stat": self.stat,
            "baseline_value": self.baseline_value,
            "comparison_value": self.comparison_value,
            "observed_change": self.observed_change,
            "modelled_change": self.modelled_change,
            "unexplained": self.unexplained,
            "significant": self.significant,
            "noise_floor": self.noise_floor,
            "change_interval": list(self.change_interval) if self.change_interval else None,
            "contributions": {str(k): v for k, v in self.contributions.items()},
            "intervals": {str(k): [lo, hi] for k, (lo, hi) in self.intervals.items()},
            "counterfactuals": {str(k): v for k, v in self.counterfactuals.items()},
            "kinds": {str(k): v for k, v in self.kinds.items()},
            "p_values": {str(k): v for k, v in self.p_values.items()},
            "root_causes": [str(n) for n in self.root_causes],
            "edges": {str(e): {"callers": [str(c) for c in e.callers], "callee": str(e.callee)} for e in self.edges},
            "baseline_rows": self.baseline_rows,
            "comparison_rows": self.comparison_rows,
            "num_samples": self.num_samples,
            "method": self.method,
            "num_permutations": self.num_permutations,
            "alpha": self.alpha,
            "seed": self.seed,
            "seconds": self.seconds,
        }


def changed_nodes_test(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Raw p-value per column that ``before`` and ``after`` (rows x nodes) come from different distributions.

    Two tests per node, Bonferroni-combined: Kolmogorov-Smirnov (any shift of the bulk) and a two-proportion
    z-test of the share of values above the baseline's 90th percentile (a partial slowdown of a few percent of
    the requests moves the tail long before it moves the KS distance). Identical constant columns get p = 1.
    """
    n0, n1 = before.shape[0], after.shape[0]
    cut = np.quantile(before, TAIL_TEST_QUANTILE, axis=0)
    k0, k1 = (before > cut).sum(axis=0), (after > cut).sum(axis=0)
    pooled = (k0 + k1) / (n0 + n1)
    se = np.sqrt(pooled * (1 - pooled) * (1.0 / n0 + 1.0 / n1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (k1 / n1 - k0 / n0) / se, 0.0)
    p_tail = 2.0 * sps.norm.sf(np.abs(z))
    a_sorted, b_sorted = np.sort(before, axis=0), np.sort(after, axis=0)
    dist = np.zeros(before.shape[1])
    for j in range(before.shape[1]):  # KS distance: the largest gap between the two empirical CDFs
        a, b = a_sorted[:, j], b_sorted[:, j]
        if a[0] == a[-1] == b[0] == b[-1]:
            continue
        grid = np.concatenate([a, b])
        dist[j] = np.max(np.abs(np.searchsorted(a, grid, "right") / n0 - np.searchsorted(b, grid, "right") / n1))
    p_ks = np.clip(special.kolmogorov(dist * np.sqrt(n0 * n1 / (n0 + n1))), 0.0, 1.0)  # asymptotic
    # one side constant (absent), the other not: KS handles it; both share a constant -> p stays 1 (p_tail too)
    return np.minimum(1.0, 2.0 * np.minimum(p_ks, p_tail))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


class _Game:
    """The coalition game of a two-period change: v(S) = statistic of the target with S from the comparison.

    A player is a node (its own time, or with a split call structure its own time per call) or the call edge of a
    node (its calls per request): ``players`` holds (is_edge, node index) pairs."""

    def __init__(self, periods: PeriodModels, players: list[tuple[bool, int]], statistic: TargetStatistic,
                 idx0: np.ndarray, idx1: np.ndarray, split: CallSplit | None = None,
                 groups: Mapping[int, list[int]] | None = None) -> None:
        self.periods = periods
        self.players = players
        self.statistic = statistic
        e0, e1 = periods.noise
        joint = idx0.ndim == 1

        def take(arr: np.ndarray, idx: np.ndarray, col: int, j: int) -> np.ndarray:
            return arr[idx, col] if joint else arr[idx[:, j], col]

        self.node_player = {j: k for k, (edge, j) in enumerate(players) if not edge}
        self.edge_player = {j: k for k, (edge, j) in enumerate(players) if edge}
        self.cols0 = [take(e0, idx0, j, j) for j in range(len(periods.nodes))]
        self.cols1 = {j: take(e1, idx1, j, j) for j in range(len(periods.nodes))}
        # an edge player switches the calls of its callee and of the callee's own new (or removed) callees
        self.edge_of = {m: k for root, k in self.edge_player.items() for m in (groups or {}).get(root, [root])}
        # nodes whose own time is (calls) x (per-call time): the edges' nodes, and node players with varying calls
        # (switching such a node switches its per-call time only, its calls stay the baseline's)
        split_nodes = set(self.edge_of) | ({j for j in self.node_player if j in split.columns} if split else set())
        self.split: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.only_new: set[int] = set()  # never called in the baseline: its own time per call is the comparison's
        for j in sorted(split_nodes):
            if split is None:
                raise RCAError("call-edge players need the split call structure")
            s = split.columns.index(j)
            if not split.called[0][:, s].any():
                self.only_new.add(j)
            self.split[j] = (take(split.counts[0], idx0, s, j), take(split.counts[1], idx1, s, j),
                             take(split.per_call[0], idx0, s, j), take(split.per_call[1], idx1, s, j))
        self.num_samples = idx0.shape[0]

    def value(self, coal: np.ndarray) -> np.ndarray:
        """Statistic for each coalition (rows of a boolean matrix over the players)."""
        coal = np.atleast_2d(np.asarray(coal, dtype=bool))
        step = max(1, _CHUNK_ELEMENTS // self.num_samples)
        return np.concatenate([self._value(coal[i:i + step]) for i in range(0, coal.shape[0], step)])

    def _value(self, coal: np.ndarray) -> np.ndarray:
        noise: list[np.ndarray] = list(self.cols0)
        f_period: list[np.ndarray | None] = [None] * len(noise)
        for j, k in self.node_player.items():
            mask = coal[:, k]
            f_period[j] = mask.astype(int)
            if j in self.split:
                continue
            if mask.all():
                noise[j] = self.cols1[j]
            elif mask.any():
                noise[j] = np.where(mask[:, None], self.cols1[j][None, :], self.cols0[j][None, :])
        for j, (c0, c1, u0, u1) in self.split.items():
            em = coal[:, self.edge_of[j]][:, None] if j in self.edge_of else np.zeros((coal.shape[0], 1), bool)
            if j in self.node_player:
                nm = coal[:, self.node_player[j]][:, None]
            else:
                nm = np.full_like(em, j in self.only_new)
            mixed = np.where(em, c1[None, :], c0[None, :]) * np.where(nm, u1[None, :], u0[None, :])
            # a node whose calls and per-call time come from the same period keeps that period's own time exactly
            noise[j] = np.where(~em & ~nm, self.cols0[j][None, :], np.where(em & nm, self.cols1[j][None, :], mixed))
        target = self.periods.simulate(noise, f_period)
        if target.ndim == 1:
            target = np.broadcast_to(target, (coal.shape[0], target.shape[0]))
        return np.asarray(self.statistic.of(target), dtype=float).reshape(coal.shape[0])

    def shapley(self, method: str, rng: np.random.Generator, max_permutations: int) -> tuple[np.ndarray, float, float, int]:
        """(Shapley values, v(none), v(all), permutations used)."""
        return shapley.of_game(self.value, len(self.players), method, rng, max_permutations=max_permutations)


def distribution_change(graph: nx.DiGraph, baseline: pd.DataFrame, comparison: pd.DataFrame, target: Hashable, *,
                        stat: str | float | TargetStatistic = "p99", threshold: float | None = None,
                        mechanisms: MechanismSpec | Mapping[Any, MechanismSpec] = "auto",
                        alpha: float = 0.05, players: list[Hashable] | None = None, intervals: int = 50,
                        confidence: float = 0.95, num_samples: int | None = None, joint: bool = True,
                        method: str = "auto", max_permutations: int = 256, dropna: bool = False,
                        min_rows: int = DEFAULT_MIN_ROWS, seed: int = 0,
                        call_counts: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> RegressionResult:
    """Attribute the change of ``stat`` of ``target`` from ``baseline`` to ``comparison`` to the changed nodes.

    ``graph``: cause -> effect DAG (callee -> caller for latencies); both tables have one column per upstream node
    of ``target`` (absent calls as 0). ``stat``: "mean", "p50", "p90", "p95", "p99" (any "pNN" or a quantile in
    (0, 1)) or "tail>T" / "tail" with ``threshold`` (P(target > T)). ``mechanisms``: as in :func:`rca_engine.fit`;
    "sum" / "max" / the collector's per-node dict are exact and fast (noise = own time), learned mechanisms
    ("auto", "linear", ...) are fitted per period and a changed f counts as a change.
    ``alpha``: false discovery rate of the per-node change test (Benjamini-Hochberg); ``players`` overrides the
    test with a fixed list of nodes. ``intervals``: bootstrap replicates (resampled rows of both tables) for the
    ``confidence`` intervals of each contribution and of the modelled change (0 = none). ``num_samples``: rows per
    coalition (default: the larger table, at least 2,000; a multiple of a table's size reproduces it exactly).
    ``joint``: resample whole rows of each period (keeps the correlation of nodes within a request, e.g. shared
    load) instead of each node's noise independently (the method's independence assumption).
    ``method``: "exact" (all coalitions; "auto" up to 10 players) or "permutation" (antithetic sampling).
    ``call_counts``: (baseline, comparison) tables of calls per request of each node, row for row with the two
    tables (structural mechanisms): a changed count is the player :class:`CallEdge` (caller -> callee) and the
    node a player only if its own time per call changed. Without them a node absent throughout one period is a
    call of the other period only: its edge is the player (``kinds`` "new" / "gone").
    """
    started = time.perf_counter()
    statistic = target_statistic(stat, threshold)
    if not 0.0 < alpha < 1.0:
        raise RCAError(f"alpha must be in (0, 1), got {alpha}")
    if method not in ("auto", "exact", "permutation"):
        raise RCAError(f"method must be 'auto', 'exact' or 'permutation', got {method!r}")
    if intervals < 0 or intervals == 1:
        raise RCAError(f"intervals must be 0 or at least 2 bootstrap replicates, got {intervals}")
    if not 0.0 < confidence < 1.0:
        raise RCAError(f"confidence must be in (0, 1), got {confidence}")
    baseline, comparison = one_sided_calls(graph, target, baseline, comparison)
    periods = PeriodModels(graph, target, [baseline, comparison], mechanisms, dropna=dropna, min_rows=min_rows,
                           seed=seed, names=["baseline data", "comparison data"])
    nodes = periods.nodes
    n0, n1 = periods.values[0].shape[0], periods.values[1].shape[0]
    size = _sample_size(num_samples, n0, n1)
    rng = np.random.default_rng([seed, 41])

    if call_counts is not None and (dropna or not periods.structural):
        raise RCAError("call_counts need structural mechanisms ('sum' / 'max' / the collector's) and dropna=False")
    tests = _change_tests(graph, periods, call_counts, seed)
    adjusted = benjamini_hochberg(tests.raw)
    if players is None:
        chosen = [tests.players[i] for i in range(len(tests.players)) if adjusted[i] <= alpha]
    else:
        chosen = tests.fixed(players, periods.nodes, target)
    names: list[Hashable] = [tests.name_of(p) for p in chosen]
    use_exact = method == "exact" or (method == "auto" and len(chosen) <= MAX_EXACT_PLAYERS)
    if use_exact and len(chosen) > 20:
        raise RCAError(f"exact Shapley values for {len(chosen)} players need 2^{len(chosen)} coalitions; "
                       "use method='permutation'")

    idx0, idx1 = _indices(n0, size, len(nodes), joint, rng), _indices(n1, size, len(nodes), joint, rng)
    game = _Game(periods, chosen, statistic, idx0, idx1, tests.split, tests.groups)
    phi, v0, v1, used = game.shapley("exact" if use_exact else "permutation", rng, max_permutations)

    y0, y1 = periods.values[0][:, -1], periods.values[1][:, -1]
    base_value, comp_value = float(statistic.of(y0)), float(statistic.of(y1))
    cf = _counterfactuals(game, v1, comp_value) if chosen else np.empty(0)

    lo_hi: dict[Hashable, tuple[float, float]] = {}
    change_interval = None
    if intervals and chosen:
        per_run = (2 ** len(chosen) if use_exact else max(used, 32) * len(chosen)) * size
        reps = int(min(intervals, max(2, _INTERVAL_BUDGET // max(per_run, 1))))
        draws, totals = _bootstrap(periods, chosen, statistic, idx0, idx1, reps, use_exact, seed, max_permutations,
                                   tests.split, tests.groups)
        tail = (1.0 - confidence) / 2.0
        lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=0)
        lo_hi = {nm: (float(lo[i]), float(hi[i])) for i, nm in enumerate(names)}
        tl, th = np.quantile(totals, [tail, 1.0 - tail])
        change_interval = (float(tl), float(th))

    sign = 1.0 if v1 - v0 >= 0 else -1.0
    order = np.argsort(-sign * phi, kind="stable") if chosen else np.empty(0, dtype=int)
    kinds = {names[i]: tests.kind(p, periods) for i, p in enumerate(chosen)}
    return RegressionResult(
        target=target, stat=statistic.name, baseline_value=base_value, comparison_value=comp_value,
        observed_change=comp_value - base_value, modelled_change=v1 - v0,
        contributions={names[i]: float(phi[i]) for i in order},
        intervals={names[i]: lo_hi[names[i]] for i in order if names[i] in lo_hi},
        change_interval=change_interval,
        counterfactuals={names[i]: float(cf[i]) for i in order},
        p_values={tests.name_of(p): float(adjusted[i]) for i, p in enumerate(tests.players)},
        kinds={names[i]: kinds[names[i]] for i in order},
        noise_floor=noise_floor(y0, statistic, n0, n1, seed=seed, confidence=confidence),
        baseline_rows=n0, comparison_rows=n1, num_samples=size,
        method="exact" if use_exact else "permutation", num_permutations=used, alpha=alpha, seed=seed,
        seconds=time.perf_counter() - started,
    )


def one_sided_calls(graph: nx.DiGraph, target: Hashable, baseline: pd.DataFrame, comparison: pd.DataFrame
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A node upstream of ``target`` with a column in one table only is a call made in that period only: the
    other table gets it as 0 ms (absent). Columns missing from both stay missing (a data error)."""
    if not isinstance(baseline, pd.DataFrame) or not isinstance(comparison, pd.DataFrame) or target not in graph:
        return baseline, comparison  # PeriodModels reports the error
    nodes = nx.ancestors(graph, target) | {target}
    only_new = [n for n in nodes if n in comparison.columns and n not in baseline.columns]
    only_old = [n for n in nodes if n in baseline.columns and n not in comparison.columns]
    if only_new:
        baseline = baseline.assign(**{str(n): 0.0 for n in only_new}) if all(isinstance(n, str) for n in only_new) \
            else pd.concat([baseline, pd.DataFrame(0.0, index=baseline.index, columns=only_new)], axis=1)
    if only_old:
        comparison = comparison.assign(**{str(n): 0.0 for n in only_old}) if all(isinstance(n, str) for n in only_old) \
            else pd.concat([comparison, pd.DataFrame(0.0, index=comparison.index, columns=only_old)], axis=1)
    return baseline, comparison


def noise_floor(baseline_target: np.ndarray, statistic: TargetStatistic, n0: int, n1: int, *, seed: int = 0,
                confidence: float = 0.95, replicates: int = 200) -> float:
    """The |change| of the statistic between two resamples of the baseline of the two periods' sizes that is
    exceeded with probability 1 - ``confidence``: changes below it are indistinguishable from resampling noise."""
    rng = np.random.default_rng([seed, 43])
    y = np.asarray(baseline_target, dtype=float)
    diffs = []
    step = max(1, _CHUNK_ELEMENTS // max(n0, n1))
    for start in range(0, replicates, step):
        k = min(step, replicates - start)
        a = statistic.of(y[rng.integers(0, y.size, size=(k, n0))])
        b = statistic.of(y[rng.integers(0, y.size, size=(k, n1))])
        diffs.append(np.abs(b - a))
    return float(np.quantile(np.concatenate(diffs), confidence))


def _counterfactuals(game: _Game, v1: float, comparison_value: float) -> np.ndarray:
    """Comparison statistic had only player i not changed: the observed value minus the model's effect of
    restoring i's baseline noise with every other changed node as in the comparison."""
    n = len(game.players)
    coal = ~np.eye(n, dtype=bool)
    return comparison_value + (game.value(coal) - v1)


def _bootstrap(periods: PeriodModels, chosen: list[tuple[bool, int]], statistic: TargetStatistic, idx0: np.ndarray,
               idx1: np.ndarray, reps: int, exact: bool, seed: int, max_permutations: int,
               split: CallSplit | None, groups: Mapping[int, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Contributions and modelled change over ``reps`` replicates with both tables' rows resampled."""
    n0, n1 = periods.values[0].shape[0], periods.values[1].shape[0]
    draws, totals = [], []
    for b in range(reps):
        rng = np.random.default_rng([seed, 47, b])
        rows0: np.ndarray = rng.integers(0, n0, size=(n0,))
        rows1: np.ndarray = rng.integers(0, n1, size=(n1,))
        game = _Game(periods, chosen, statistic, rows0[idx0], rows1[idx1], split, groups)
        phi, v0, v1, _ = game.shapley("exact" if exact else "permutation", rng, max_permutations)
        draws.append(phi)
        totals.append(v1 - v0)
    return np.array(draws), np.array(totals)


def _sample_size(num_samples: int | None, n0: int, n1: int) -> int:
    if num_samples is None:
        return int(min(max(n0, n1, DEFAULT_NUM_SAMPLES), MAX_NUM_SAMPLES))
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or not \
            100 <= num_samples <= MAX_NUM_SAMPLES:
        raise RCAError(f"num_samples must be an integer in 100..{MAX_NUM_SAMPLES:,}, got {num_samples!r}")
    return int(num_samples)


def _indices(n: int, size: int, n_nodes: int, joint: bool, rng: np.random.Generator) -> np.ndarray:
    if joint:
        return balanced_indices(n, size, rng)
    return np.column_stack([balanced_indices(n, size, rng) for _ in range(n_nodes)])


def _kind(before: np.ndarray, after: np.ndarray) -> str:
    absent0, absent1 = bool(np.all(before == 0)), bool(np.all(after == 0))
    if absent0 and not absent1:
        return "new"
    if absent1 and not absent0:
        return "gone"
    return "changed"


@dataclass
class _ChangeTests:
    """The candidate players (node and call-edge tests), their raw p-values and the call-structure split."""

    players: list[tuple[bool, int]]  # (is_edge, node index)
    raw: np.ndarray
    nodes: list[Hashable]
    edges: dict[int, CallEdge]
    counts: list[np.ndarray] | None
    split: CallSplit | None
    groups: dict[int, list[int]] = field(default_factory=dict)  # edge player -> the nodes whose calls it switches

    def name_of(self, player: tuple[bool, int]) -> Hashable:
        edge, j = player
        return self.edges[j] if edge else self.nodes[j]

    def kind(self, player: tuple[bool, int], periods: PeriodModels) -> str:
        edge, j = player
        if edge and self.counts is not None:
            return _kind(self.counts[0][:, j], self.counts[1][:, j])
        return _kind(periods.values[0][:, j], periods.values[1][:, j])

    def fixed(self, players: list[Hashable], nodes: list[Hashable], target: Hashable) -> list[tuple[bool, int]]:
        """A user's fixed list of players: nodes, and CallEdges of the tested call structure."""
        out: list[tuple[bool, int]] = []
        for p in players:
            if isinstance(p, CallEdge):
                j = next((j for j, e in self.edges.items() if e.callee == p.callee and j in self.groups), None)
                if j is None:
                    raise RCAError(f"{p} is not a call edge whose count changed upstream of {target!r}")
                out.append((True, j))
            elif p in nodes:
                out.append((False, nodes.index(p)))
            else:
                raise RCAError(f"players {[p]!r} are not upstream of {target!r}")
        return sorted(set(out), key=lambda t: (t[0], t[1]))


def _change_tests(graph: nx.DiGraph, periods: PeriodModels, call_counts: tuple[pd.DataFrame, pd.DataFrame] | None,
                  seed: int) -> _ChangeTests:
    """Raw p-values that each node's own time (per call, where the call structure is split) and each node's calls
    per request changed. Nodes whose calls per request are one constant in both periods keep the plain own-time
    test (the only test without call structure: nothing else changes for them)."""
    nodes = periods.nodes
    own0, own1 = periods.noise[0], periods.residuals(1, under=0)
    if not periods.structural:  # learned mechanisms: the node tests only (a new call changes its own time)
        return _ChangeTests([(False, j) for j in range(len(nodes))], changed_nodes_test(own0, own1), nodes, {},
                            None, None)
    counts = count_matrices(call_counts, nodes, periods.noise, periods.values)
    c0, c1 = counts
    fixed = (c0.min(axis=0) == c0.max(axis=0)) & (c1.min(axis=0) == c1.max(axis=0)) & (c0[0] == c1[0])
    raw_nodes = changed_nodes_test(own0, own1)
    varying = [j for j in range(len(nodes)) if not fixed[j]]
    players: list[tuple[bool, int]] = [(False, j) for j in range(len(nodes))]
    raw = list(raw_nodes)
    edges: dict[int, CallEdge] = {}
    split = None
    if varying:
        edges = {j: call_edge(graph, nodes[j], nodes) for j in varying}
        split = split_calls(varying, [edges[j] for j in varying], periods.noise, counts,
                            np.random.default_rng([seed, 61]))
        for s, j in enumerate(varying):
            a, b = split.called[0][:, s], split.called[1][:, s]
            if a.sum() < 2 or b.sum() < 2:  # a call of one period only: no own time per call to compare
                raw[j] = 1.0
            else:
                raw[j] = float(changed_nodes_test(split.per_call[0][a, s][:, None], split.per_call[1][b, s][:, None])[0])
        groups = _new_subtrees(graph, nodes, varying, counts)
        raw_edges = changed_nodes_test(c0[:, list(groups)], c1[:, list(groups)])
        players += [(True, j) for j in groups]
        raw += list(raw_edges)
        return _ChangeTests(players, np.array(raw, dtype=float), nodes, edges, counts, split, groups)
    return _ChangeTests(players, np.array(raw, dtype=float), nodes, edges, counts, split)


def _new_subtrees(graph: nx.DiGraph, nodes: list[Hashable], varying: list[int], counts: list[np.ndarray]
                  ) -> dict[int, list[int]]:
    """Edge players and the nodes each switches: a node called in one period only whose callers are all called in
    that period only as well belongs to its callers' player (a new call brings its callee's whole new subtree: its
    network hop, its own calls); every other node with varying calls is a player of its own."""
    index = {n: j for j, n in enumerate(nodes)}
    absent = [np.all(c == 0, axis=0) for c in counts]
    one_sided = {j: (bool(absent[0][j]), bool(absent[1][j])) for j in varying if absent[0][j] != absent[1][j]}
    root: dict[int, int] = {}
    for j in reversed(range(len(nodes))):  # nodes are in topological order (callees first): callers come later
        if j not in set(varying):
            continue
        callers = [index[c] for c in graph.successors(nodes[j]) if c in index]
        if j in one_sided and callers and all(one_sided.get(c) == one_sided[j] for c in callers):
            tops = {root[c] for c in callers}
            if len(tops) == 1:
                root[j] = tops.pop()
                continue
        root[j] = j
    groups: dict[int, list[int]] = {}
    for j in varying:
        groups.setdefault(root[j], []).append(j)
    return dict(sorted(groups.items()))
