"""Information-theoretic (IT) outlier scores: -log P(g(X) >= g(x)) for a base outlier score g.

Base scores: ``median`` (DoWhy's MedianCDFQuantileScorer, g(x) = 1 - 2 min(P(X < x) + P(X = x)/2,
P(X > x) + P(X = x)/2), a two-sided quantile), ``zscore`` (g(x) = |x - mean| / std) and ``upper`` (g(x) = x:
one-sided, only large values are outliers, as for latencies and error counts, where "unusually fast" or
"unusually few errors" is nothing to explain). For each, the event {g(X) >= g(x)} is {X <= a} ∪ {X >= b} for two
thresholds (a = -inf for ``upper``), which is how the engine evaluates it on millions of Monte-Carlo values at once. Tail probabilities use :mod:`rca_engine.tails` (``fitted`` or DoWhy's ``dowhy``).
"""

from __future__ import annotations

import numpy as np

from . import tails
from .errors import RCAError

BASE_SCORES = ("median", "zscore", "upper")


def check_options(base: str, tail: str) -> None:
    """Raise :class:`RCAError` for an unknown base score or tail estimator."""
    if base not in BASE_SCORES:
        raise RCAError(f"unknown base score {base!r}; choose one of {', '.join(BASE_SCORES)}")
    if tail not in tails.TAIL_METHODS:
        raise RCAError(f"unknown tail estimator {tail!r}; choose one of {', '.join(tails.TAIL_METHODS)}")


def median_rank(sorted_ref: np.ndarray, values: np.ndarray) -> np.ndarray:
    """DoWhy's two-sided rank min(#below + eq/2, #above + eq/2) (eq counts the value itself); g decreases in it."""
    n = sorted_ref.shape[0]
    left = np.searchsorted(sorted_ref, values, side="left")
    right = np.searchsorted(sorted_ref, values, side="right")
    half_eq = (right - left + 1) / 2.0
    return np.minimum(left + half_eq, (n - right) + half_eq)


def rank_event_bounds(sorted_ref: np.ndarray, x_rank: float) -> tuple[float, bool, float, bool]:
    """{v : median_rank(v) <= x_rank} as (lo, lo_strict, hi, hi_strict): v < lo (or <=) or v > hi (or >=).

    The rank is unimodal over the ordered 'slots' (gap before the first distinct value, the value, the next
    gap, ...), so the event is a prefix and a suffix of slots; counting then needs two comparisons per value
    instead of two binary searches.
    """
    n = sorted_ref.size
    uniq, counts = np.unique(sorted_ref, return_counts=True)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    point_rank = np.minimum(start + (counts + 1) / 2.0, n - start - counts + (counts + 1) / 2.0)
    gap_start = np.concatenate([start, [n]])
    gap_rank = np.minimum(gap_start + 0.5, n - gap_start + 0.5)
    slots = np.empty(2 * uniq.size + 1)
    slots[0::2], slots[1::2] = gap_rank, point_rank
    ok = slots <= x_rank + 1e-12
    if ok.all():
        return np.inf, False, -np.inf, False
    first_bad = int(np.argmin(ok))  # slots [0, first_bad) qualify
    last_bad = int(slots.size - 1 - np.argmin(ok[::-1]))  # slots (last_bad, end] qualify

    def bound(slot: int, lower: bool) -> tuple[float, bool]:
        # lower: event v in slots [0, slot] -> v < uniq[k] if slot is gap k, v <= uniq[k] if point k
        if slot < 0 or slot >= slots.size:
            return (-np.inf if lower else np.inf), True
        k, is_gap = divmod(slot, 2)[0], slot % 2 == 0
        if lower:
            return (float(uniq[k]), True) if is_gap else (float(uniq[k]), False)
        # upper: event v in slots [slot, end]: gap k -> v > uniq[k-1]; point k -> v >= uniq[k]
        return (float(uniq[k - 1]), True) if is_gap else (float(uniq[k]), False)

    lo, lo_strict = bound(first_bad - 1, True)
    hi, hi_strict = bound(last_bad + 1, False)
    return lo, lo_strict, hi, hi_strict


class ITScorer:
    """IT score of values of one variable against a reference sample of it (fit once, score many)."""

    def __init__(self, base: str = "median", tail: str = "fitted") -> None:
        check_options(base, tail)
        self.base = base
        self.tail = tail
        self.ref_ = np.empty(0)

    def fit(self, reference: np.ndarray) -> ITScorer:
        ref = np.sort(np.asarray(reference, dtype=float).reshape(-1))
        self.ref_ = ref
        self.tail_ = tails.SortedTail(ref, self.tail)
        self.median_ = float(np.median(ref))
        self.mean_ = float(ref.mean())
        self.std_ = float(ref.std()) or 1.0
        self.ref_ranks_sorted_ = np.sort(median_rank(ref, ref))
        return self

    def thresholds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) such that {g(X) >= g(x)} = {X <= a} ∪ {X >= b} for each value of ``x``."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        if self.base == "upper":
            return np.full(x.shape, -np.inf), x.copy()
        if self.base == "zscore":
            d = np.abs(x - self.mean_)
            below = x < self.mean_  # x itself bounds its own side exactly (mean -/+ d can round away from it)
            return np.where(below, x, self.mean_ - d), np.where(below, self.mean_ + d, x)
        upper = x >= self.median_
        a = np.where(upper, -np.inf, x)
        b = np.where(upper, x, np.inf)
        if upper.any():  # the lower value with the same tail probability
            a[upper] = self.tail_.lower_quantile(self.tail_.upper_log_prob(x[upper]))
        if (~upper).any():
            b[~upper] = self.tail_.upper_quantile(self.tail_.lower_log_prob(x[~upper]))
        return a, b

    def log_tail(self, x: np.ndarray) -> np.ndarray:
        """log P(g(X) >= g(x)) under the reference distribution (<= 0)."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        n = self.ref_.size
        if self.tail == "dowhy":
            if self.base == "median":
                count = np.searchsorted(self.ref_ranks_sorted_, median_rank(self.ref_, x), side="right")
            else:
                a, b = self.thresholds(x)
                count = np.searchsorted(self.ref_, a, side="right") + (n - np.searchsorted(self.ref_, b, side="left"))
            return np.asarray(np.log((count + 0.5) / (n + 0.5)), dtype=float)
        if self.base == "upper":
            return np.asarray(np.minimum(self.tail_.upper_log_prob(x), 0.0), dtype=float)
        if self.base == "median":
            upper = x >= self.median_
            lp = np.where(upper, self.tail_.upper_log_prob(x), self.tail_.lower_log_prob(x))
            return np.asarray(np.minimum(lp + np.log(2.0), 0.0), dtype=float)
        a, b = self.thresholds(x)
        lp = np.logaddexp(self.tail_.lower_log_prob(a), self.tail_.upper_log_prob(b))
        return np.asarray(np.minimum(lp, 0.0), dtype=float)

    def score(self, x: np.ndarray) -> np.ndarray:
        """IT scores (nats) of the values ``x``: -log P(g(X) >= g(x)); 0 for typical values."""
        return -self.log_tail(x)


def coalition_log_prob(
    y: np.ndarray, scorer: ITScorer, a: float, b: float, x_rank: float | None = None, method: str | None = None
) -> np.ndarray:
    """log P(g(Y) >= g(x)) for each row of Monte-Carlo target values ``y`` (rows x samples).

    ``method`` (default: the scorer's tail) ``dowhy``: DoWhy's counting estimator, with the two-sided rank of
    ``scorer`` when ``x_rank`` is given (DoWhy's scorer), else on the event {Y <= a} ∪ {Y >= b}.
    ``fitted``: {Y <= a} ∪ {Y >= b}, counting + fitted tail on both sides (as the reference IT score does).
    """
    m = y.shape[1]
    if (method or scorer.tail) == "dowhy":
        if x_rank is not None:
            lo, lo_strict, hi, hi_strict = rank_event_bounds(scorer.ref_, x_rank)
            below = (y < lo) if lo_strict else (y <= lo)
            above = (y > hi) if hi_strict else (y >= hi)
            hits = (below | above).sum(axis=1)
        else:
            hits = ((y <= a) | (y >= b)).sum(axis=1)
        return np.asarray(np.log((hits + 0.5) / (m + 0.5)), dtype=float)
    lp_hi = tails.upper_log_prob(y, b) if np.isfinite(b) else np.full(y.shape[0], -np.inf)
    lp_lo = tails.lower_log_prob(y, a) if np.isfinite(a) else np.full(y.shape[0], -np.inf)
    return np.asarray(np.minimum(np.logaddexp(lp_lo, lp_hi), 0.0), dtype=float)
