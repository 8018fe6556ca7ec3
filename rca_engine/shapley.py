"""Shapley values of a set function evaluated in batches: exact (all coalitions) and permutation sampling.

Coalitions are boolean matrices (rows x players). The set function ``value(coalitions) -> values`` is called
with whole batches so that the caller can evaluate them in one vectorised pass. v(∅) and v(N) are passed in
separately, so the values always sum exactly to v(N) - v(∅) (efficiency holds per permutation too).
"""

from __future__ import annotations

from collections.abc import Callable
from math import factorial

import numpy as np
from scipy.stats.qmc import Halton

SetFunction = Callable[[np.ndarray], np.ndarray]


def all_coalitions(n: int) -> np.ndarray:
    """All 2^n coalitions; row c has player i iff bit i of c is set."""
    codes = np.arange(2**n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool)


def exact(value: SetFunction, n: int, v_empty: float, v_full: float) -> np.ndarray:
    """Exact Shapley values: one batched evaluation of the 2^n - 2 proper coalitions."""
    coal = all_coalitions(n)
    v = np.empty(2**n)
    v[0], v[-1] = v_empty, v_full
    if n > 1:
        v[1:-1] = value(coal[1:-1])
    size = coal.sum(axis=1)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    codes = np.arange(2**n)
    phi = np.empty(n)
    for i in range(n):
        without = codes[~coal[:, i]]
        phi[i] = np.sum(weight[size[without]] * (v[without | (1 << i)] - v[without]))
    return phi


def of_game(value: SetFunction, n: int, method: str, rng: np.random.Generator, max_permutations: int = 256
            ) -> tuple[np.ndarray, float, float, int]:
    """Shapley values of a game whose v(∅) and v(N) are not known beforehand (a two-period change): evaluates
    both, then ``exact`` or ``permutation``; returns (values, v(∅), v(N), permutations used)."""
    ends = value(np.array([[False] * n, [True] * n]))
    v0, v1 = float(ends[0]), float(ends[1])
    if n == 0:
        return np.empty(0), v0, v1, 0
    if n == 1:
        return np.array([v1 - v0]), v0, v1, 0
    if method == "exact":
        return exact(value, n, v0, v1), v0, v1, 0
    phi, used = permutation(value, n, v0, v1, rng, max_permutations=max_permutations)
    return phi, v0, v1, used


def _prefix_coalitions(perms: np.ndarray) -> np.ndarray:
    """For permutations (p x n): the n - 1 proper prefix coalitions of each, (p*(n-1)) x n."""
    p, n = perms.shape
    rank = np.empty_like(perms)
    rank[np.arange(p)[:, None], perms] = np.arange(n)[None, :]
    # prefix k (1..n-1) contains players with rank < k
    ks = np.arange(1, n)
    return (rank[:, None, :] < ks[None, :, None]).reshape(p * (n - 1), n)


class _Cache:
    """Values of coalitions evaluated so far, keyed by their packed bits."""

    def __init__(self, value: SetFunction) -> None:
        self.value = value
        self.known: dict[bytes, float] = {}

    def __call__(self, coal: np.ndarray) -> np.ndarray:
        keys = [row.tobytes() for row in np.packbits(coal, axis=1)]
        new = {}
        for k, i in zip(keys, range(len(keys)), strict=False):
            if k not in self.known and k not in new:
                new[k] = i
        if new:
            vals = self.value(coal[list(new.values())])
            for k, v in zip(new, vals, strict=False):
                self.known[k] = float(v)
        return np.array([self.known[k] for k in keys])


def _marginals(perms: np.ndarray, prefix_values: np.ndarray, v_empty: float, v_full: float) -> np.ndarray:
    """Marginal contribution of every player in every permutation (p x n, indexed by player)."""
    p, n = perms.shape
    chain = np.concatenate([np.full((p, 1), v_empty), prefix_values.reshape(p, n - 1), np.full((p, 1), v_full)], axis=1)
    diffs = np.diff(chain, axis=1)  # diffs[:, k] = contribution of perms[:, k]
    out = np.empty((p, n))
    out[np.arange(p)[:, None], perms] = diffs
    return out


def permutation(value: SetFunction, n: int, v_empty: float, v_full: float, rng: np.random.Generator, *,
                batch: int = 8, min_permutations: int = 32, max_permutations: int = 256,
                tolerance: float = 0.01) -> tuple[np.ndarray, int]:
    """Antithetic permutation sampling with a stopping rule; returns (Shapley values, permutations used).

    Each random permutation is paired with its reverse (antithetic: a player early in one is late in the other,
    which cancels much of the variance). Batches of ``batch`` pairs are added until the standard error of
    every value is below ``tolerance`` x |v(N) - v(∅)| (or ``max_permutations`` is reached).
    """
    cache = _Cache(value)
    pair_means: list[np.ndarray] = []
    scale = max(abs(v_full - v_empty), 1e-12)
    used = 0
    while True:
        base = np.argsort(rng.random((batch, n)), axis=1)
        perms = np.concatenate([base, base[:, ::-1]])
        vals = cache(_prefix_coalitions(perms))
        marg = _marginals(perms, vals, v_empty, v_full)
        pair_means.extend(list((marg[:batch] + marg[batch:]) / 2.0))
        used += 2 * batch
        stack = np.array(pair_means)
        if used >= min_permutations:
            se = stack.std(axis=0, ddof=1) / np.sqrt(stack.shape[0])
            if np.all(se <= tolerance * scale) or used >= max_permutations:
                return stack.mean(axis=0), used


def halton_permutations(value: SetFunction, n: int, v_empty: float, v_full: float, num_permutations: int,
                        seed: int) -> np.ndarray:
    """DoWhy's PERMUTATION estimator: ``num_permutations`` permutations from a Halton sequence (argsort)."""
    num = min(factorial(n), num_permutations)
    perms = np.argsort(Halton(n, seed=seed).random(num), axis=1)
    vals = _Cache(value)(_prefix_coalitions(perms))
    return _marginals(perms, vals, v_empty, v_full).mean(axis=0)
