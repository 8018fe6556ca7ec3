"""Tail probability estimators: DoWhy's counting estimator and a counting + fitted-tail extrapolation.

``dowhy``: P(Y >= t) ~ (#{Y_i >= t} + 0.5) / (M + 0.5), so every event beyond the sample range gets the same
capped probability 0.5 / (M + 0.5) and extreme outliers can no longer be ranked.

``fitted`` (default): counting while at least ``K_SWITCH`` samples reach t; beyond that the log survival
function is extrapolated from the ``k`` largest samples: -log S(y) is regressed on z = (y - u) / s (u the k-th
largest value, s the spread of the top values) with a quadratic (light, Gaussian-like tails) or, when the
quadratic term would be negative (exponential or heavier tails), a line. Beyond the largest sample (z > 1) the
fit continues along its tangent: no tail is assumed lighter than exponential where no data was seen, so a request
ten times slower than usual scores tens to hundreds of nats, not the thousands a squared distance would claim.
Within the sample range this tracks Gaussian (quadratic) and exponential (linear) tails; beyond it, it is a
lower bound of any log-concave tail (conservative), always finite, strictly decreasing, and vectorised over many
samples (one batched 3x3 least-squares solve per row).
"""

from __future__ import annotations

import numpy as np

K_SWITCH = 10  # below this many exceedances the counting estimate is too coarse: extrapolate
TAIL_METHODS = ("fitted", "dowhy")


def tail_size(m: int) -> int:
    """Number of upper order statistics the tail is fitted to for a sample of size ``m``."""
    return int(min(max(30, 0.1 * m), 1000, max(m - 1, 1)))


def top_values(y: np.ndarray, k: int) -> np.ndarray:
    """Per row the ``k`` largest values, sorted descending (rows x k)."""
    y = np.atleast_2d(y)
    m = y.shape[1]
    k = min(k, m)
    part = np.partition(y, m - k, axis=1)[:, m - k :]
    return -np.sort(-part, axis=1)


def fit_log_survival(top: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row (u, s, coef) with -log S(y) ~ c0 + c1 z + c2 z^2, z = (y - u) / s; s = 0 marks a degenerate row."""
    r, k = top.shape
    u = top[:, -1]
    s = top[:, 0] - u
    ok = s > 1e-6 * (1.0 + np.abs(u))  # spreads within float rounding of one value are an atom, not a tail
    z = (top - u[:, None]) / np.where(ok, s, 1.0)[:, None]
    target = -np.log((np.arange(1, k + 1) - 0.5) / m)
    # normal equations of the least-squares fit from power sums (no r x k x 3 design tensor)
    z2 = z * z
    s1, s2, s3, s4 = z.sum(axis=1), z2.sum(axis=1), (z2 * z).sum(axis=1), (z2 * z2).sum(axis=1)
    t0, t1, t2 = np.full(r, target.sum()), z @ target, z2 @ target
    ata = np.stack([np.stack([np.full(r, float(k)), s1, s2], 1), np.stack([s1, s2, s3], 1),
                    np.stack([s2, s3, s4], 1)], 1) + 1e-12 * np.eye(3)
    coef = np.linalg.solve(ata, np.stack([t0, t1, t2], 1)[..., None])[..., 0]
    concave = coef[:, 2] < 0
    if concave.any():
        c = concave
        ata2 = np.stack([np.stack([np.full(int(c.sum()), float(k)), s1[c]], 1), np.stack([s1[c], s2[c]], 1)], 1)
        lin = np.linalg.solve(ata2 + 1e-12 * np.eye(2), np.stack([t0[c], t1[c]], 1)[..., None])[..., 0]
        coef[c] = np.column_stack([lin, np.zeros(lin.shape[0])])
    ok &= coef[:, 1] + 2.0 * coef[:, 2] > 0  # increasing at the edge of the sample, and so beyond it
    return u, np.where(ok, s, 0.0), coef


def neg_log_survival(z: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """-log S at z from the fit ``coef`` (rows x 3, or one row broadcast): the quadratic up to the largest sample
    (z = 1), then its tangent line. The tangent is a lower bound of a convex (log-concave) tail, so a score far
    beyond the data is conservative: it keeps growing (extreme events stay ranked) but never faster than an
    exponential tail with the slope reached at the edge of the sample, instead of squaring the distance.
    """
    c0, c1, c2 = (np.asarray(coef)[..., i] for i in range(3))
    inside = c0 + c1 * z + c2 * z * z
    edge, slope = c0 + c1 + c2, c1 + 2.0 * c2
    return np.where(z <= 1.0, inside, edge + slope * (z - 1.0))


def inverse_neg_log_survival(h: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """z with neg_log_survival(z, coef) = h (for h beyond the fitted start of the tail)."""
    c0, c1, c2 = (float(c) for c in coef)
    edge, slope = c0 + c1 + c2, c1 + 2.0 * c2
    rhs = h - c0
    if c2 > 0:
        inside = (-c1 + np.sqrt(np.maximum(c1 * c1 + 4 * c2 * rhs, 0.0))) / (2 * c2)
    else:
        inside = rhs / c1
    return np.where(h <= edge, inside, 1.0 + (h - edge) / slope)


ATOM_FRACTION = 0.02  # a largest value repeated in this share of the sample is a real atom, not resampling


def extreme_is_atom(top: np.ndarray, m: int) -> np.ndarray:
    """Per row of descending top values (of a sample of size ``m``): does the largest value carry a real atom of
    probability (discrete or constant data)? Resampling n training values M times repeats each about M/n times,
    which is not an atom unless n is tiny: the repeats must reach ATOM_FRACTION of the sample."""
    top = np.atleast_2d(top)
    head = top[:, :1]
    repeats = (top >= head - 1e-6 * (1.0 + np.abs(head))).sum(axis=1)
    return np.asarray(repeats >= max(2.0, min(ATOM_FRACTION * m, top.shape[1])))


def beyond_sample_cap(count: np.ndarray, m: int, atom: np.ndarray | bool) -> np.ndarray:
    """Upper bound of the fitted log tail probability: log(K_SWITCH / m) near the end of the sample; beyond a
    repeated maximum (discrete or constant data: no sample exceeded it) DoWhy's counting estimate
    log(0.5 / (m + 0.5)), because the fit there describes the mass of that atom, not what lies beyond it."""
    return np.asarray(np.where((count == 0) & atom, np.log(0.5 / (m + 0.5)), np.log(K_SWITCH / m)), dtype=float)


def upper_log_prob(y: np.ndarray, t: np.ndarray | float, method: str = "fitted") -> np.ndarray:
    """log P(Y >= t) per row of ``y`` (rows x samples) for thresholds ``t`` (scalar or one per row)."""
    y = np.atleast_2d(y)
    r, m = y.shape
    t = np.broadcast_to(np.asarray(t, dtype=float), (r,))
    count = (y >= t[:, None]).sum(axis=1)
    smoothed = np.log((count + 0.5) / (m + 0.5))
    if method == "dowhy":
        return smoothed
    out = np.log(np.maximum(count, 1e-300) / m)
    need = count < K_SWITCH
    if need.any():
        top = top_values(y[need], tail_size(m))
        u, s, coef = fit_log_survival(top, m)
        z = (t[need] - u) / np.where(s > 0, s, 1.0)
        ext = np.minimum(-neg_log_survival(z, coef), beyond_sample_cap(count[need], m, extreme_is_atom(top, m)))
        out[need] = np.where(s > 0, ext, smoothed[need])
    return out


def lower_log_prob(y: np.ndarray, t: np.ndarray | float, method: str = "fitted") -> np.ndarray:
    """log P(Y <= t) per row (the upper tail of -Y)."""
    return upper_log_prob(-np.atleast_2d(y), -np.asarray(t, dtype=float), method)


class SortedTail:
    """Tail estimates of one sorted 1-D reference sample, fitted once: O(log n) per queried threshold."""

    def __init__(self, sorted_ref: np.ndarray, method: str = "fitted") -> None:
        self.ref = np.asarray(sorted_ref, dtype=float)
        self.method = method
        m = self.ref.size
        k = tail_size(m)
        self._upper = fit_log_survival(self.ref[::-1][:k][None, :], m)
        self._lower = fit_log_survival(-self.ref[:k][None, :], m)
        self._upper_atom = bool(extreme_is_atom(self.ref[::-1][:k], m)[0])
        self._lower_atom = bool(extreme_is_atom(-self.ref[:k], m)[0])

    def _log_prob(self, count: np.ndarray, t: np.ndarray, fit: tuple[np.ndarray, np.ndarray, np.ndarray],
                  atom: bool) -> np.ndarray:
        m = self.ref.size
        smoothed = np.log((count + 0.5) / (m + 0.5))
        if self.method == "dowhy":
            return smoothed
        out = np.log(np.maximum(count, 1e-300) / m)
        u, s, coef = (v[0] for v in fit)
        need = count < K_SWITCH
        if need.any():
            if s > 0:
                z = (t[need] - u) / s
                cap = beyond_sample_cap(count[need], m, atom)
                out[need] = np.minimum(-neg_log_survival(z, coef), cap)
            else:
                out[need] = smoothed[need]
        return out

    def upper_log_prob(self, t: np.ndarray) -> np.ndarray:
        """log P(Y >= t)."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        count = self.ref.size - np.searchsorted(self.ref, t, side="left")
        return self._log_prob(count, t, self._upper, self._upper_atom)

    def lower_log_prob(self, t: np.ndarray) -> np.ndarray:
        """log P(Y <= t)."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        count = np.searchsorted(self.ref, t, side="right")
        return self._log_prob(count, -t, self._lower, self._lower_atom)

    def _quantile(self, log_p: np.ndarray, ref: np.ndarray, fit: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        m = ref.size
        p = np.exp(np.minimum(log_p, 0.0))
        q = np.asarray(np.quantile(ref, np.clip(1.0 - p, 0.0, 1.0)), dtype=float).reshape(-1)
        u, s, coef = (v[0] for v in fit)
        far = p < K_SWITCH / m
        if self.method != "dowhy" and far.any():
            # an event rarer than the K_SWITCH most extreme samples lies beyond the sample's extreme: strictly beyond,
            # so that an atom there (repeated or discrete values, a constant) is not counted as part of the event
            beyond = ref[-1] + 1e-5 * (1.0 + abs(ref[-1]))
            q[far] = np.maximum(u + s * inverse_neg_log_survival(-log_p[far], coef), beyond) if s > 0 else beyond
        return q

    def upper_quantile(self, log_p: np.ndarray) -> np.ndarray:
        """t with log P(Y >= t) = log_p."""
        return self._quantile(np.atleast_1d(log_p), self.ref, self._upper)

    def lower_quantile(self, log_p: np.ndarray) -> np.ndarray:
        """t with log P(Y <= t) = log_p."""
        return -self._quantile(np.atleast_1d(log_p), -self.ref[::-1], self._lower)
