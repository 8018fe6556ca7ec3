"""Target statistics of a latency distribution (mean, any quantile, tail probability of a threshold).

One :class:`TargetStatistic` computes its value over the last axis of an array, so a whole batch of simulated
coalitions (coalitions x samples) is reduced in one call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import RCAError

_QUANTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")
_TAIL = re.compile(r"^tail\s*(?:>|:|@)\s*(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$")


@dataclass(frozen=True)
class TargetStatistic:
    """A statistic of the target's distribution: ``kind`` "mean", "quantile" (at ``q``) or "tail" (P(X > threshold))."""

    name: str
    kind: str
    q: float = 0.0
    threshold: float = 0.0

    @property
    def is_probability(self) -> bool:
        """True for the tail probability (unit: probability, not the target's unit)."""
        return self.kind == "tail"

    def of(self, values: np.ndarray) -> np.ndarray:
        """The statistic over the last axis of ``values`` (a float for 1-D input)."""
        x = np.asarray(values, dtype=float)
        if self.kind == "mean":
            return x.mean(axis=-1)
        if self.kind == "quantile":
            return np.quantile(x, self.q, axis=-1)
        return (x > self.threshold).mean(axis=-1)


def target_statistic(stat: str | float | TargetStatistic, threshold: float | None = None) -> TargetStatistic:
    """Parse a statistic: "mean", "median", "p50" / "p99" / "p99.9", a quantile in (0, 1), "q0.95",
    "tail" with ``threshold`` or "tail>250" (the probability of exceeding 250)."""
    if isinstance(stat, TargetStatistic):
        return stat
    if isinstance(stat, (int, float)) and not isinstance(stat, bool):
        return _quantile(float(stat), f"q{float(stat):g}")
    if not isinstance(stat, str) or not stat.strip():
        raise RCAError(f"stat must be 'mean', 'p50'..'p99.9', a quantile in (0, 1) or 'tail>threshold', got {stat!r}")
    text = stat.strip().lower()
    if text in ("mean", "avg", "average"):
        return TargetStatistic("mean", "mean")
    if text == "median":
        return TargetStatistic("p50", "quantile", q=0.5)
    m = _QUANTILE.match(text)
    if m:
        return _quantile(float(m.group(1)) / 100.0, text)
    if text.startswith("q"):
        try:
            return _quantile(float(text[1:]), text)
        except ValueError:
            pass
    if text == "tail":
        if threshold is None or not np.isfinite(float(threshold)):
            raise RCAError("stat 'tail' needs a finite threshold (e.g. stat='tail>250' or threshold=250)")
        return TargetStatistic(f"tail>{float(threshold):g}", "tail", threshold=float(threshold))
    m = _TAIL.match(text)
    if m:
        return TargetStatistic(f"tail>{float(m.group(1)):g}", "tail", threshold=float(m.group(1)))
    raise RCAError(f"unknown stat {stat!r}; use 'mean', 'median', 'p50', 'p90', 'p95', 'p99' (any 'pNN'), "
                   "a quantile in (0, 1) or 'tail>threshold'")


def _quantile(q: float, name: str) -> TargetStatistic:
    if not 0.0 < q < 1.0:
        raise RCAError(f"a quantile must be strictly between 0 and 1 (p0 < pNN < p100), got {name!r}")
    label = f"p{q * 100:g}"
    return TargetStatistic(label if name.startswith("p") or name.startswith("q") else name, "quantile", q=q)
