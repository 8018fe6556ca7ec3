"""Affine fast path of the attribution's set function.

When every player's mechanism is affine in its parents (empirical roots, linear, sum, max of a single parent) the
target is Y = const + Σ_j c_j N_j, with c_j the path coefficient of player j (products of the edge weights along
each path j -> target, summed over paths). Fixing the noise of a coalition S at the observed values shifts every
Monte-Carlo draw by Σ_{j∈S} c_j (fixed_j - N_j), so the target values of a whole batch of coalitions on the shared
draws need no pass through the graph. That sum is the product (coalitions x players) @ (players x draws); it is
computed from subset-sum tables of groups of 6 players (2^6 rows each), so that a coalition costs one gather-add per
group: as fast as a single-threaded BLAS product, and free of BLAS threads, which on a busy machine spin against
the scoring that follows (3-4x the CPU time) and whose process-wide limit is not safe to toggle from threads.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass

import numpy as np

from .model import CausalModel

_GROUP = 6  # players per subset-sum table
_CHECK_ROWS = 16  # noise rows on which the affine form is checked against the model's own propagation


@dataclass(frozen=True)
class AffineTarget:
    """The target as an affine function of the players' noises: Y = const + coef @ N."""

    coef: np.ndarray  # path coefficient per player (players in the Attributor's topological order)
    const: float

    def values(self, noise: np.ndarray) -> np.ndarray:
        """Target values for noise rows (rows x players), float64."""
        return np.asarray(noise, dtype=float) @ self.coef + self.const

    def coalition_values(self, coal: np.ndarray, fixed: np.ndarray, mc_noise: np.ndarray,
                         chunk: int) -> Iterator[tuple[slice, np.ndarray]]:
        """Target values (coalitions x draws, float32) with each coalition's members' noise fixed to ``fixed``
        and the others taken from ``mc_noise`` (players x draws), in chunks of ``chunk`` coalitions.

        Base values and shifts are computed in float64 and rounded once, so v(∅)'s draws are the float32 roundings
        of the exact target draws (ties with thresholds taken from those draws resolve as in float64).
        """
        mc = np.asarray(mc_noise, dtype=float)
        base = (self.coef @ mc + self.const).astype(np.float32)  # every noise redrawn: v(∅)'s draws
        shift = (self.coef[:, None] * (np.asarray(fixed, dtype=float)[:, None] - mc)).astype(np.float32)
        n = shift.shape[0]
        groups = [np.arange(g, min(g + _GROUP, n)) for g in range(0, n, _GROUP)]
        tables = [_subset_sums(shift[g]) for g in groups]
        tables[0] += base
        bits = np.int64(1) << np.arange(_GROUP, dtype=np.int64)
        for s in range(0, coal.shape[0], chunk):
            part = coal[s : s + chunk]
            y = tables[0][part[:, groups[0]].astype(np.int64) @ bits[: groups[0].size]]
            for g, table in zip(groups[1:], tables[1:], strict=True):
                y += table[part[:, g].astype(np.int64) @ bits[: g.size]]
            yield slice(s, s + part.shape[0]), y


def _subset_sums(rows: np.ndarray) -> np.ndarray:
    """All 2^k subset sums of the k ``rows``: row c of the result sums the rows whose bit is set in c."""
    table = np.zeros((1 << rows.shape[0], rows.shape[1]), dtype=rows.dtype)
    for i in range(rows.shape[0]):
        table[1 << i : 2 << i] = table[: 1 << i] + rows[i]
    return table


def affine_target(model: CausalModel, players: list[Hashable]) -> AffineTarget | None:
    """The affine form of the last player (the target) in the noises of ``players`` (its ancestors, topologically
    ordered), or None when some mechanism is not affine.

    Coefficients come from one reverse topological sweep (c_target = 1, c_parent += w · c_child). The form is
    then checked against ``model.propagate`` on a few noise draws, so a custom mechanism that declares an affine
    form it does not evaluate falls back to the general path instead of giving wrong answers.
    """
    forms = [model.mechanisms[v].affine_form() for v in players]
    if not players or any(f is None for f in forms):
        return None
    pos = {v: j for j, v in enumerate(players)}
    coef = np.zeros(len(players))
    coef[-1] = 1.0
    const = 0.0
    for j in range(len(players) - 1, -1, -1):
        form = forms[j]
        assert form is not None
        intercept, weights = form
        parents = [pos[model.nodes[p]] for p in model.parent_idx[model.index[players[j]]]]
        if len(weights) != len(parents):
            return None
        const += coef[j] * intercept
        for p, w in zip(parents, np.asarray(weights, dtype=float).tolist(), strict=True):
            coef[p] += w * coef[j]
    aff = AffineTarget(coef, float(const))
    noise = model.draw_noise(_CHECK_ROWS, players, np.random.default_rng(0))
    exact = model.propagate(noise, players)[:, -1]
    if not np.allclose(aff.values(noise), exact, rtol=1e-9, atol=1e-9 * (1.0 + float(np.abs(exact).max()))):
        return None
    return aff


@dataclass(frozen=True)
class FrontierTarget:
    """The target as an affine function of some players' noises and of the values of a few non-affine nodes:
    Y = const + coef @ N + Σ_k weight_k V_k. Every path from a non-affine node k to the target runs through affine
    mechanisms, so V_k enters linearly; V_k itself depends only on which of k's own ancestors are fixed, few enough
    to tabulate for all their patterns (the Attributor's small-node cache). One maximum of parallel callers deep in
    a linear graph then costs a lookup per coalition instead of a pass through the graph."""

    affine: AffineTarget  # coef is 0 for players whose noise reaches the target only through non-affine nodes
    terms: tuple[tuple[int, float], ...]  # (player position of a non-affine node, its path coefficient)


def frontier_target(model: CausalModel, players: list[Hashable]) -> FrontierTarget | None:
    """The :class:`FrontierTarget` of the last player, or None when the target itself is not affine (or a
    mechanism declares an affine form it does not evaluate: checked against ``model.propagate``)."""
    forms = [model.mechanisms[v].affine_form() for v in players]
    if not players or forms[-1] is None:
        return None
    pos = {v: j for j, v in enumerate(players)}
    coef = np.zeros(len(players))
    coef[-1] = 1.0
    const = 0.0
    terms: list[tuple[int, float]] = []
    for j in range(len(players) - 1, -1, -1):
        if coef[j] == 0.0:
            continue
        form = forms[j]
        if form is None:  # a non-affine node: its value enters with coefficient coef[j], its noise inside V_j
            terms.append((j, float(coef[j])))
            coef[j] = 0.0
            continue
        intercept, weights = form
        parents = [pos[model.nodes[p]] for p in model.parent_idx[model.index[players[j]]]]
        if len(weights) != len(parents):
            return None
        const += coef[j] * intercept
        for p, w in zip(parents, np.asarray(weights, dtype=float).tolist(), strict=True):
            coef[p] += w * coef[j]
    if not terms:
        return None
    out = FrontierTarget(AffineTarget(coef, float(const)), tuple(terms))
    noise = model.draw_noise(_CHECK_ROWS, players, np.random.default_rng(0))
    values = model.propagate(noise, players)
    approx = out.affine.values(noise) + sum(w * values[:, k] for k, w in out.terms)
    exact = values[:, -1]
    if not np.allclose(approx, exact, rtol=1e-9, atol=1e-9 * (1.0 + float(np.abs(exact).max()))):
        return None
    return out
