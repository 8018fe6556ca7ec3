"""Attribution of an outlier of a target node to the noise of each upstream node (Budhathoki et al., 2022).

v(S) = log P(g(Y) >= g(x) | noises of S fixed at their reconstructed values, the others redrawn);
a node's contribution is its Shapley value, and the contributions sum to v(N) - v(∅) = the IT score.
All coalitions of a batch are evaluated in one pass through the graph in topological order: each node is
computed once per distinct pattern of its own upstream coalition members (common random numbers: every
coalition uses the same Monte-Carlo noise draws), and only the target's values are scored.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from . import shapley
from .affine import AffineTarget, FrontierTarget, affine_target, frontier_target
from .errors import RCAError
from .model import CausalModel, _fit_values, chosen_specs, require_model
from .options import GAMES, METHODS, Options, resolve
from .scoring import ITScorer, coalition_log_prob, median_rank

__all__ = ["GAMES", "METHODS", "Attributor", "Explanation", "WindowExplanation", "attribute", "attribute_many",
           "attribute_window", "bootstrap_intervals", "outlier_scores"]
MAX_EXACT_PLAYERS = 11
SAMPLING_NUM_SAMPLES = 1000  # Monte-Carlo size per coalition when sampling permutations (many more coalitions)
# coalitions x samples per pass near the target: bounds memory, and blocks of <= 512 KB are reused by malloc
# instead of being mapped afresh (page faults made 1 M-element chunks ~2x slower)
_CHUNK_ELEMENTS = 131_072
_SMALL_NODE_ELEMENTS = 500_000  # nodes with at most this many pattern x sample values are computed once


@dataclass
class Explanation:
    """The attribution of one outlier (all numbers in nats unless said otherwise)."""

    target: Hashable
    target_value: float
    outlier_score: float
    contributions: dict[Hashable, float]
    root_causes: list[Hashable]
    counterfactuals: dict[Hashable, float]
    intervals: dict[Hashable, tuple[float, float]] = field(default_factory=dict)
    observed: dict[Hashable, float] = field(default_factory=dict)
    method: str = "exact"
    num_samples: int = 0
    num_permutations: int = 0
    tail: str = "fitted"
    base: str = "median"
    seed: int = 0
    game: str = "counting"

    @property
    def shares(self) -> dict[Hashable, float]:
        """Contribution / outlier score per node."""
        total = self.outlier_score if abs(self.outlier_score) > 1e-12 else 1.0
        return {n: c / total for n, c in self.contributions.items()}

    @property
    def rarer_than(self) -> float:
        """1 / tail probability of the target's value ('one in N')."""
        return float(np.exp(self.outlier_score))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (node ids as strings)."""
        return {
            "target": str(self.target),
            "target_value": self.target_value,
            "outlier_score": self.outlier_score,
            "rarer_than": self.rarer_than,
            "contributions": {str(k): v for k, v in self.contributions.items()},
            "shares": {str(k): v for k, v in self.shares.items()},
            "root_causes": [str(n) for n in self.root_causes],
            "counterfactuals": {str(k): v for k, v in self.counterfactuals.items()},
            "intervals": {str(k): [lo, hi] for k, (lo, hi) in self.intervals.items()},
            "observed": {str(k): v for k, v in self.observed.items()},
            "method": self.method,
            "num_samples": self.num_samples,
            "num_permutations": self.num_permutations,
            "tail": self.tail,
            "base": self.base,
            "seed": self.seed,
            "game": self.game,
        }


@dataclass
class WindowExplanation:
    """The attribution of an incident window: the explanations of its outlier rows, contributions summed (nats)."""

    target: Hashable
    outlier_score: float  # sum of the explained rows' outlier scores
    contributions: dict[Hashable, float]  # per node, summed over the explained rows
    root_causes: list[Hashable]
    rows: list[int]  # positions (0-based) of the explained rows in the window
    window_scores: list[float]  # the target's outlier score of every row of the window
    threshold: float
    explanations: list[Explanation] = field(default_factory=list)  # one per explained row, in ``rows`` order

    @property
    def shares(self) -> dict[Hashable, float]:
        """Contribution / outlier score per node."""
        total = self.outlier_score if abs(self.outlier_score) > 1e-12 else 1.0
        return {n: c / total for n, c in self.contributions.items()}

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (node ids as strings), the per-row explanations included."""
        return {
            "target": str(self.target),
            "outlier_score": self.outlier_score,
            "contributions": {str(k): v for k, v in self.contributions.items()},
            "shares": {str(k): v for k, v in self.shares.items()},
            "root_causes": [str(n) for n in self.root_causes],
            "rows": list(self.rows),
            "window_scores": list(self.window_scores),
            "threshold": self.threshold,
            "explanations": [e.to_dict() for e in self.explanations],
        }


def _pattern_ids(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first-occurrence index, inverse) of the distinct rows of a boolean matrix."""
    if sub.shape[1] <= 62:
        keys = sub.astype(np.int64) @ (np.int64(1) << np.arange(sub.shape[1], dtype=np.int64))
    else:
        packed = np.ascontiguousarray(np.packbits(sub, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


class Attributor:
    """Prepared attribution of outliers of one target: players, Monte-Carlo noise and scorer, reused per sample."""

    def __init__(self, model: CausalModel, target: Hashable, options: Options | None = None, *,
                 num_samples: int | None = None, seed: int | None = None, base: str | None = None,
                 tail: str | None = None, dowhy_compatible: bool | None = None, method: str | None = None,
                 game: str | None = None) -> None:
        opts = resolve(model.options, None, options, num_samples=num_samples, seed=seed, base=base, tail=tail,
                       dowhy_compatible=dowhy_compatible, method=method, game=game)
        if opts.dowhy_compatible:
            opts = opts.replace(base="median", tail="dowhy", game="counting")
        self.options = opts
        dowhy_compatible, base, tail, game, seed = opts.dowhy_compatible, opts.base, opts.tail, opts.game, opts.seed
        self.game = game
        self.players = model.upstream(target)
        exact_limit = 5 if dowhy_compatible else MAX_EXACT_PLAYERS
        method = opts.method
        self.method = method if method != "auto" else ("exact" if len(self.players) <= exact_limit else "permutation")
        num_samples = opts.num_samples
        if num_samples is None:
            num_samples = 3000 if dowhy_compatible or self.method == "exact" else SAMPLING_NUM_SAMPLES
        self.model = model
        self.target = target
        self.num_samples = int(num_samples)
        self.seed = seed
        self.base, self.tail = base, tail
        self.dowhy_compatible = dowhy_compatible
        n = len(self.players)
        pos = {v: j for j, v in enumerate(self.players)}
        g = model.graph
        self.parent_pos = [[pos[model.nodes[p]] for p in model.parent_idx[model.index[v]]] for v in self.players]
        self.relevant = [np.array(sorted(pos[a] for a in nx.ancestors(g, v) | {v})) for v in self.players]
        last_use = list(range(n))
        for j, ps in enumerate(self.parent_pos):
            for p in ps:
                last_use[p] = max(last_use[p], j)
        self.last_use = last_use
        self.mechs = [model.mechanisms[v] for v in self.players]
        self.small = [2 ** r.size * self.num_samples <= _SMALL_NODE_ELEMENTS for r in self.relevant]
        self.pow2 = np.int64(1) << np.arange(62, dtype=np.int64)
        rng = np.random.default_rng([seed, 11])
        draws = model.draw_noise(self.num_samples, self.players, rng, empirical=dowhy_compatible)
        # coalition propagation runs in float32: half the memory traffic, ample precision for tail counts
        self.mc_noise = np.ascontiguousarray(draws.T, dtype=np.float32)  # players x M
        self.mc_noise64 = np.ascontiguousarray(draws.T)  # the affine path rounds once, from the exact draws
        if tail == "dowhy":  # DoWhy fits the scorer on the same Monte-Carlo samples it uses for the tail counts
            self.mc_target = model.propagate(draws, self.players)[:, -1]
            self.scorer = ITScorer(base, tail).fit(self.mc_target)
        else:
            self.scorer = model.scorer(target, base, tail)
        self.typical = np.array([m.typical_noise() for m in self.mechs])
        # every mechanism affine: the coalitions' target values are one matrix product (rca_engine.affine)
        self.affine: AffineTarget | None = affine_target(model, self.players)
        # else: affine down to a few non-affine nodes whose values are tabulated for all patterns (small nodes)
        self.frontier: FrontierTarget | None = None
        if self.affine is None:
            front = frontier_target(model, self.players)
            if front is not None and all(self.small[k] for k, _ in front.terms):
                self.frontier = front
        self._rng = np.random.default_rng([seed, 13])

    # -- the set function -------------------------------------------------------------------------------
    def target_values(self, coal: np.ndarray, fixed: np.ndarray,
                      cache: dict[int, np.ndarray]) -> Iterator[tuple[slice, np.ndarray]]:
        """Target values (coalitions x M) with each coalition's members' noise fixed to ``fixed``, in chunks.

        A node's values depend only on which of its own ancestors (and itself) are fixed. Nodes with few such
        players ("small") are computed once per explanation for all their 2^r patterns (``cache``) and looked up;
        the others (near the target) once per distinct pattern within a chunk of coalitions (bounds memory).
        With an affine target (``self.affine``) the graph pass is replaced by one matrix product per chunk.
        """
        n, m, k = len(self.players), self.num_samples, coal.shape[0]
        if self.affine is not None:
            yield from self.affine.coalition_values(coal, fixed, self.mc_noise64, max(1, _CHUNK_ELEMENTS // m))
            return
        if self.frontier is not None:
            yield from self._frontier_values(self.frontier, coal, fixed, cache)
            return
        codes = {}
        for j in range(n):
            if self.small[j]:
                self._small_values(j, fixed, cache)
                codes[j] = coal[:, self.relevant[j]].astype(np.int64) @ self.pow2[: self.relevant[j].size]
        if self.small[-1]:
            yield slice(0, k), cache[n - 1][codes[n - 1]]
            return
        chunk = max(1, _CHUNK_ELEMENTS // m)
        for s in range(0, k, chunk):
            part = coal[s : s + chunk]
            local: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for j in range(n):
                if self.small[j]:
                    continue
                first, inverse = _pattern_ids(part[:, self.relevant[j]])
                cols = []
                for p in self.parent_pos[j]:
                    if self.small[p]:
                        cols.append(cache[p][codes[p][s + first]])
                    else:
                        pv, pinv = local[p]
                        cols.append(pv[pinv[first]])
                local[j] = (self._node_values(j, part[first, j], cols, fixed), inverse)
                for p in self.parent_pos[j]:
                    if not self.small[p] and self.last_use[p] == j:
                        del local[p]
            tv, tinv = local[n - 1]
            yield slice(s, s + part.shape[0]), tv[tinv]

    def _frontier_values(self, front: FrontierTarget, coal: np.ndarray, fixed: np.ndarray,
                         cache: dict[int, np.ndarray]) -> Iterator[tuple[slice, np.ndarray]]:
        """Target values of a :class:`FrontierTarget`: the affine part's subset sums plus each non-affine node's
        tabulated values (all patterns of its upstream players) looked up per coalition."""
        looked_up: list[tuple[np.float32, np.ndarray, np.ndarray]] = []
        for j, weight in front.terms:
            self._small_values(j, fixed, cache)
            code = coal[:, self.relevant[j]].astype(np.int64) @ self.pow2[: self.relevant[j].size]
            looked_up.append((np.float32(weight), cache[j], code))
        chunk = max(1, _CHUNK_ELEMENTS // self.num_samples)
        for rows, y in front.affine.coalition_values(coal, fixed, self.mc_noise64, chunk):
            for w32, table, code in looked_up:
                y += w32 * table[code[rows]]
            yield rows, y

    def _small_values(self, j: int, fixed: np.ndarray, cache: dict[int, np.ndarray]) -> None:
        """Values of small node j for all 2^r patterns of its upstream players (bit order of ``relevant[j]``)."""
        if j in cache:
            return
        rel = self.relevant[j]
        pats = shapley.all_coalitions(rel.size)
        where = {int(p): i for i, p in enumerate(rel)}
        cols = []
        for p in self.parent_pos[j]:
            self._small_values(p, fixed, cache)
            sub = pats[:, [where[int(q)] for q in self.relevant[p]]]
            cols.append(cache[p][sub.astype(np.int64) @ self.pow2[: sub.shape[1]]])
        cache[j] = self._node_values(j, pats[:, where[j]], cols, fixed)

    def _node_values(self, j: int, is_fixed: np.ndarray, cols: list[np.ndarray], fixed: np.ndarray) -> np.ndarray:
        noise = np.empty((is_fixed.shape[0], self.num_samples), dtype=np.float32)
        noise[...] = self.mc_noise[j]
        noise[is_fixed] = fixed[j]
        return self.mechs[j].evaluate_columns(cols, noise)

    def set_function(self, x_value: float, fixed: np.ndarray, method: str) -> shapley.SetFunction:
        """v(S) for a batch of coalitions S with tail estimator ``method``, in memory-bounded chunks."""
        a_arr, b_arr = self.scorer.thresholds(np.array([x_value]))
        # float32 propagation: the threshold at x itself gets a relative slack of 1e-6 so that reproducing x counts
        # as reaching it; the mirror threshold on the other side keeps its exact value (it may sit just beyond an
        # atom of the reference, which the slack must not pull back in)
        a, b = float(a_arr[0]), float(b_arr[0])
        if x_value >= self.scorer.median_ or self.base == "upper":
            b = b - 1e-6 * (1.0 + abs(b)) if np.isfinite(b) else b
        else:
            a = a + 1e-6 * (1.0 + abs(a)) if np.isfinite(a) else a
        x_rank = (float(median_rank(self.scorer.ref_, np.array([x_value]))[0])
                  if self.tail == "dowhy" and self.base == "median" else None)
        cache = self._cache

        def value(coal: np.ndarray) -> np.ndarray:
            out = np.empty(coal.shape[0])
            for part, y in self.target_values(coal, fixed, cache):
                out[part] = coalition_log_prob(y, self.scorer, a, b, x_rank, method)
            return out

        return value

    # -- one outlier --------------------------------------------------------------------------------------
    def explain(self, values: np.ndarray, *, max_permutations: int | None = None, tolerance: float | None = None,
                num_permutations: int = 25) -> Explanation:
        """Explanation of one outlier given the values of the players (in ``self.players`` order)."""
        max_permutations = self.options.max_permutations if max_permutations is None else max_permutations
        tolerance = self.options.tolerance if tolerance is None else tolerance
        n = len(self.players)
        fixed = self.model.noise_of(values[None, :], self.players)[0]
        x_value = float(values[-1])
        self._cache: dict[int, np.ndarray] = {}  # small-node values of this outlier, shared by both set functions
        game_method = "dowhy" if self.game == "counting" else self.tail
        value = self.set_function(x_value, fixed, game_method)
        # v(∅) on the same Monte-Carlo draws as every other coalition (common random numbers): a node whose noise
        # never matters then gets exactly 0. The score is the IT score of x on those draws; it agrees with
        # model.it_score (cached, larger reference sample) up to Monte-Carlo error.
        empty = np.zeros((1, n), dtype=bool)
        v_empty = min(float(value(empty)[0]), 0.0)
        score = -v_empty
        if game_method != self.tail:
            # counting game, scaled below to the fitted-tail score of x against the model's cached reference sample
            # (larger than the Monte-Carlo draws, and the very score the detector computes with it_score)
            score = float(self.scorer.score(np.array([x_value]))[0])
        v_full = 0.0
        use = self.method
        perms_used = 0
        if use == "exact":
            if n > 20:
                raise RCAError(f"exact Shapley over {n} players is too expensive; use method='permutation'")
            phi = shapley.exact(value, n, v_empty, v_full)
        elif self.dowhy_compatible:
            seed = int(np.random.default_rng([self.seed, 17]).integers(np.iinfo(np.int32).max))
            phi = shapley.halton_permutations(value, n, v_empty, v_full, num_permutations, seed)
            perms_used = num_permutations
        else:
            rng = np.random.default_rng([self.seed, 19])
            phi, perms_used = shapley.permutation(value, n, v_empty, v_full, rng, tolerance=tolerance,
                                                  max_permutations=max_permutations)
        if score != -v_empty:
            # Shares from the (stable) counting game, magnitude from the fitted-tail score: counting saturates at
            # log(2M+1) and its rare-coalition values are floors, the fitted tail in every coalition is unbiased but
            # noisy there (extrapolation). Scaling keeps the sum exact and null players at 0.
            phi = phi * (score / -v_empty) if -v_empty > 1e-9 else phi + (score + v_empty) / n
        contributions = {v: float(c) for v, c in zip(self.players, phi, strict=False)}
        return Explanation(
            target=self.target,
            target_value=x_value,
            outlier_score=float(score),
            contributions=contributions,
            root_causes=sorted(contributions, key=lambda k: -contributions[k]),
            counterfactuals=self.counterfactuals(fixed),
            observed={v: float(x) for v, x in zip(self.players, values, strict=False)},
            method=use,
            num_samples=self.num_samples,
            num_permutations=perms_used,
            tail=self.tail,
            base=self.base,
            seed=self.seed,
            game=self.game,
        )

    def counterfactuals(self, fixed: np.ndarray) -> dict[Hashable, float]:
        """Target value had each node's noise been typical (its median), all other noises as observed."""
        n = len(self.players)
        noise = np.tile(fixed, (n, 1))
        noise[np.arange(n), np.arange(n)] = self.typical
        target = self.model.propagate(noise, self.players)[:, -1]
        return {v: float(t) for v, t in zip(self.players, target, strict=False)}


def _with_sample(model: CausalModel, opts: Options, target: Hashable, samples: object) -> CausalModel:
    """The model to explain ``samples`` with: refitted with their rows when ``opts.fit_on_sample``. Nodes the
    samples lack (none of them upstream of ``target``, which the caller checked) take their training median."""
    if not opts.fit_on_sample:
        return model
    present = [n for n in model.nodes if not isinstance(samples, pd.DataFrame) or n in samples.columns]
    if isinstance(samples, (pd.Series, dict)):
        present = [n for n in model.nodes if n in samples]
    part = model.values_of(samples, present)
    rows = np.tile(np.median(model.training, axis=0), (part.shape[0], 1))
    rows[:, [model.index[n] for n in present]] = part
    return model.with_rows(rows)


def attribute(model: CausalModel, target: Hashable, sample: object, *, preset: str | None = None,
              options: Options | None = None, intervals: int = 0, confidence: float = 0.95,
              n_jobs: int | None = None, seed: int | None = None, num_samples: int | None = None,
              method: str | None = None, tail: str | None = None, base: str | None = None,
              dowhy_compatible: bool | None = None, max_permutations: int | None = None,
              tolerance: float | None = None, game: str | None = None) -> Explanation:
    """Attribute the target's value in ``sample`` (Series / dict / 1-row DataFrame) to every upstream node.

    Settings: the model's options (those it was fitted with), or ``options`` / the named ``preset``; keyword
    arguments override single fields (see :class:`Options`): ``method`` "exact" (all coalitions, the "auto" choice
    up to 11 players) or "permutation" (antithetic sampling with a stopping rule, at most ``max_permutations``);
    ``num_samples`` Monte-Carlo draws per coalition (default 3,000 for exact, 1,000 for sampling); ``tail`` "fitted"
    or "dowhy" (counting, capped at log(2M + 1)); ``base`` "median", "upper", "zscore"; ``game`` "counting" (DoWhy's
    counting game, stable, scaled to sum to the ``tail`` estimate of the score) or "tail" (the ``tail`` estimator in
    every coalition); ``dowhy_compatible``: DoWhy 0.14's exact algorithm. With ``fit_on_sample`` (the ``metrics``
    preset) the mechanisms f are refitted with the sample's row first (``fit``'s ``incident``).
    ``intervals`` > 0: that many bootstrap refits give a ``confidence`` interval per contribution.
    """
    model = require_model(model)
    opts = resolve(model.options, preset, options, seed=seed, num_samples=num_samples, method=method, tail=tail,
                   base=base, dowhy_compatible=dowhy_compatible, max_permutations=max_permutations,
                   tolerance=tolerance, game=game)
    if model.values_of(sample, model.upstream(target)).shape[0] != 1:
        raise RCAError("attribute() explains one sample, got several rows; use attribute_many()")
    model = _with_sample(model, opts, target, sample)
    att = Attributor(model, target, opts)
    values = model.values_of(sample, att.players)
    expl = att.explain(values[0])
    if intervals:
        expl.intervals = bootstrap_intervals(model, target, values[0], att.players, int(intervals),
                                             confidence=confidence, n_jobs=n_jobs, options=opts)
    return expl


def attribute_many(model: CausalModel, target: Hashable, samples: object, *, preset: str | None = None,
                   options: Options | None = None, seed: int | None = None, num_samples: int | None = None,
                   method: str | None = None, tail: str | None = None, base: str | None = None,
                   dowhy_compatible: bool | None = None, max_permutations: int | None = None,
                   tolerance: float | None = None, game: str | None = None) -> list[Explanation]:
    """Attribute many outliers of the same target (Monte-Carlo draws and scorer prepared once; settings as in
    :func:`attribute`; with ``fit_on_sample`` every sample's row informs f)."""
    model = require_model(model)
    opts = resolve(model.options, preset, options, seed=seed, num_samples=num_samples, method=method, tail=tail,
                   base=base, dowhy_compatible=dowhy_compatible, max_permutations=max_permutations,
                   tolerance=tolerance, game=game)
    model.values_of(samples, model.upstream(target))  # bad samples fail before any refit
    model = _with_sample(model, opts, target, samples)
    att = Attributor(model, target, opts)
    values = model.values_of(samples, att.players)
    return [att.explain(row) for row in values]


def attribute_window(model: CausalModel, target: Hashable, window: pd.DataFrame, *, preset: str | None = None,
                     options: Options | None = None, threshold: float | None = None, seed: int | None = None,
                     num_samples: int | None = None, method: str | None = None, tail: str | None = None,
                     base: str | None = None, max_permutations: int | None = None, tolerance: float | None = None,
                     game: str | None = None) -> WindowExplanation:
    """Attribute an incident window (several rows, e.g. the metric intervals of an incident) to every upstream node.

    Detect, then explain, for a window: the target's outlier score of every row against the model
    (:func:`outlier_scores`); the rows reaching ``threshold`` nats (the options' ``window_threshold``, 3 = rarer than
    1 in 20) are explained, or the most unusual row when none does; their contributions are summed (Shapley values
    are additive, so the sums attribute the explained rows' total outlier score). Rows that are not outliers are
    not explained: their contributions are noise, and a node that is unusual in every row without moving the target
    would collect them. With ``fit_on_sample`` (the ``metrics`` preset) every row of the window informs the
    mechanisms f first (under the method's assumption a fault changes noise, never f: the whole window is valid data
    for f). Other settings as in :func:`attribute`.
    """
    model = require_model(model)
    opts = resolve(model.options, preset, options, seed=seed, num_samples=num_samples, method=method, tail=tail,
                   base=base, max_permutations=max_permutations, tolerance=tolerance, game=game,
                   window_threshold=threshold)
    if not isinstance(window, pd.DataFrame):
        raise RCAError(f"window must be a DataFrame of rows, got {type(window).__name__}")
    if window.empty:
        raise RCAError("window has no rows")
    if target not in window.columns:
        raise RCAError(f"window has no column for the target {target!r}")
    model.values_of(window, model.upstream(target))  # bad rows fail before any refit
    scores = outlier_scores(model, window[[target]], options=opts)[target].to_numpy()
    rows = [int(i) for i in np.flatnonzero(scores >= opts.window_threshold)] or [int(np.argmax(scores))]
    refit = _with_sample(model, opts, target, window)
    att = Attributor(refit, target, opts)
    values = refit.values_of(window, att.players)
    expls = [att.explain(values[i]) for i in rows]
    total = {v: float(sum(e.contributions[v] for e in expls)) for v in att.players}
    return WindowExplanation(
        target=target,
        outlier_score=float(sum(e.outlier_score for e in expls)),
        contributions=total,
        root_causes=sorted(total, key=lambda k: -total[k]),
        rows=rows,
        window_scores=[float(x) for x in scores],
        threshold=float(opts.window_threshold),
        explanations=expls,
    )


def bootstrap_intervals(model: CausalModel, target: Hashable, values: np.ndarray, players: list[Hashable],
                        num: int, *, confidence: float = 0.95, n_jobs: int | None = None,
                        options: Options | None = None, **overrides: object) -> dict[Hashable, tuple[float, float]]:
    """Percentile intervals of each contribution over ``num`` refits on resampled training rows (settings: the
    model's options or ``options``, single fields overridden by keyword)."""
    if num < 2:
        raise RCAError(f"intervals needs at least 2 bootstrap refits, got {num}")
    if not 0 < confidence < 1:
        raise RCAError(f"confidence must be in (0, 1), got {confidence}")
    opts = resolve(model.options, None, options, **overrides)
    specs = chosen_specs(model)  # keep what 'auto' chose, so refits are comparable and fast
    sample = dict(zip(players, values, strict=False))

    def one(b: int) -> np.ndarray:
        rng = np.random.default_rng([opts.seed, 23, b])
        rows = rng.integers(0, model.n_rows, size=model.n_rows)
        refit = _fit_values(model.graph, model.training[rows], specs, model.options.replace(seed=model.seed + b + 1),
                            model.incident)
        att = Attributor(refit, target, opts.replace(seed=opts.seed + b + 1))
        expl = att.explain(np.array([sample[p] for p in att.players]))
        return np.array([expl.contributions[p] for p in players])

    workers = n_jobs or min(4, num)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        draws = np.array(list(pool.map(one, range(num))))
    lo, hi = np.quantile(draws, [(1 - confidence) / 2, 1 - (1 - confidence) / 2], axis=0)
    return {p: (float(lo[i]), float(hi[i])) for i, p in enumerate(players)}


def outlier_scores(model: CausalModel, data: object, *, preset: str | None = None, options: Options | None = None,
                   base: str | None = None, tail: str | None = None) -> pd.DataFrame:
    """IT outlier score (nats) of every value in ``data`` against its node's fitted marginal, one column per node
    (base score and tail estimator: the model's options, or ``options`` / ``preset``, or the keywords)."""
    model = require_model(model)
    opts = resolve(model.options, preset, options, base=base, tail=tail)
    cols = [c for c in model.nodes if isinstance(data, pd.DataFrame) and c in data.columns]
    if isinstance(data, pd.DataFrame) and not cols:
        raise RCAError("data has none of the model's node columns")
    nodes = cols if cols else model.nodes
    values = model.values_of(data, nodes)
    index = data.index if isinstance(data, pd.DataFrame) else None
    return pd.DataFrame({v: model.it_score(v, values[:, j], opts.base, opts.tail) for j, v in enumerate(nodes)},
                        index=index)
