"""Causal mechanisms: how a node's value arises from its parents and its own noise (additive noise models).

Every mechanism is a small scikit-learn style estimator: ``fit(parents, y)`` then the vectorised
``predict(parents)`` (the deterministic part f), ``noise(parents, y) = y - f(parents)`` (noise reconstruction)
and ``evaluate(parents, noise) = f(parents) + noise``. The noise distribution is the empirical distribution of
the training residuals (``noise_samples_``), as in DoWhy's AdditiveNoiseModel.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import ThreadpoolController

from .errors import MechanismError

MECHANISM_NAMES = ("empirical", "linear", "additive", "maxlinear", "nonlinear", "auto", "sum", "max")


class Mechanism:
    """Additive noise mechanism x = f(parents) + noise; subclasses implement ``_fit_f`` and ``predict``."""

    name = "base"

    def __init__(self) -> None:
        self.noise_samples_: np.ndarray = np.empty(0)
        self.parents_: list[Hashable] = []

    def fit(self, parents: np.ndarray, y: np.ndarray, parent_names: Sequence[Hashable] = ()) -> Mechanism:
        """Fit f on (parents, y) and store the training residuals as the noise distribution."""
        parents = np.asarray(parents, dtype=float).reshape(len(y), -1)
        y = np.asarray(y, dtype=float).reshape(-1)
        self.parents_ = list(parent_names)
        self._fit_f(parents, y)
        return self.set_noise(parents, y)

    def set_noise(self, parents: np.ndarray, y: np.ndarray) -> Mechanism:
        """Take the noise distribution from these rows' residuals (f unchanged): f may be fitted on more rows
        than are normal (see ``rca_engine.fit``'s ``incident``), the noise must come from normal rows only."""
        parents = np.asarray(parents, dtype=float).reshape(len(y), -1)
        self.noise_samples_ = np.ascontiguousarray(np.asarray(y, dtype=float).reshape(-1) - self.predict(parents))
        self.typical_: float | None = None
        self._splice_cache: dict[float, tuple[tuple[float, float], tuple[float, float]]] | None = None
        return self

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        raise MechanismError(f"{type(self).__name__} does not implement _fit_f")

    def predict(self, parents: np.ndarray) -> np.ndarray:
        """Deterministic part f(parents) for every row of ``parents`` (rows x parents)."""
        raise MechanismError(f"{type(self).__name__} does not implement predict")

    def noise(self, parents: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Reconstructed noise y - f(parents)."""
        return np.asarray(y, dtype=float) - self.predict(parents)

    def evaluate(self, parents: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Node value f(parents) + noise."""
        return self.predict(parents) + noise

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        """f(parents) + noise for parents given as equally shaped arrays (one per parent), any shape.

        ``noise`` is a scratch array the caller hands over: implementations may write the result into it.
        """
        if not columns:
            noise += self.predict(np.empty((1, 0))).astype(noise.dtype)[0]
            return noise
        stacked = np.stack([c.reshape(-1) for c in columns], axis=1)
        noise += self.predict(stacked).reshape(noise.shape).astype(noise.dtype)
        return noise

    def affine_form(self) -> tuple[float, np.ndarray] | None:
        """(intercept, weight per parent) when f is affine in the parents, else None (the general path)."""
        return None

    def draw_noise(self, n: int, rng: np.random.Generator, tail_fraction: float = 0.0) -> np.ndarray:
        """``n`` draws (with replacement) from the empirical noise distribution.

        ``tail_fraction`` > 0: draws beyond the (1 - tail_fraction) quantile of the training noise (and below the
        tail_fraction quantile) are replaced by that quantile plus (minus) an exponential draw whose mean is the
        training noise's mean excess there. The empirical distribution never exceeds the largest training value;
        new data does, so with few training rows the far tail of anything built from these draws is too light and
        IT scores of rare-but-normal values come out too high. A side with fewer than 5 values beyond the quantile,
        or none beyond it at all (an atom), keeps the empirical draws.
        """
        x = self.noise_samples_[rng.integers(0, self.noise_samples_.shape[0], size=n)]
        if tail_fraction <= 0:
            return x
        for side, (u, scale) in enumerate(self._tail_splice(float(tail_fraction))):
            if scale <= 0:
                continue
            beyond = x > u if side == 0 else x < u
            k = int(beyond.sum())
            if k:  # x is a fresh array (fancy indexing copies): the training noise stays untouched
                step = rng.exponential(scale, k)
                x[beyond] = u + step if side == 0 else u - step
        return x

    def _tail_splice(self, tail_fraction: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """((upper quantile, mean excess), (lower quantile, mean deficit)) of the training noise, cached."""
        cache = getattr(self, "_splice_cache", None)  # reset by fit: tails of an earlier fit no longer apply
        if cache is None:
            cache = {}
            self._splice_cache = cache
        if tail_fraction not in cache:
            s = self.noise_samples_
            out = []
            for q, sign in ((1.0 - tail_fraction, 1.0), (tail_fraction, -1.0)):
                u = float(np.quantile(s, q)) if s.size else 0.0
                excess = sign * (s - u)
                excess = excess[excess > 0]
                out.append((u, float(excess.mean()) if excess.size >= 5 else 0.0))
            cache[tail_fraction] = (out[0], out[1])
        return cache[tail_fraction]

    def typical_noise(self) -> float:
        """Median of the noise distribution (the 'normal' value used for counterfactuals), computed once."""
        cached = getattr(self, "typical_", None)
        if cached is None:
            cached = self.typical_ = float(np.median(self.noise_samples_))
        return float(cached)

    def describe(self) -> str:
        return self.name


class EmpiricalMechanism(Mechanism):
    """Root node: the empirical distribution of the training values (f = 0, noise = value)."""

    name = "empirical"

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        if parents.shape[1]:
            raise MechanismError("the 'empirical' mechanism is only for root nodes (nodes without parents)")

    def predict(self, parents: np.ndarray) -> np.ndarray:
        return np.zeros(np.asarray(parents).shape[0])

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        return noise

    def affine_form(self) -> tuple[float, np.ndarray] | None:
        return 0.0, np.empty(0)


class LinearMechanism(Mechanism):
    """x = a + b·parents + noise, least squares."""

    name = "linear"

    def __init__(self) -> None:
        super().__init__()
        self.coef_ = np.empty(0)
        self.intercept_ = 0.0

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        design = np.column_stack([np.ones(len(y)), parents])
        sol, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.intercept_, self.coef_ = float(sol[0]), sol[1:].copy()

    def predict(self, parents: np.ndarray) -> np.ndarray:
        return np.asarray(parents, dtype=float) @ self.coef_ + self.intercept_

    def affine_form(self) -> tuple[float, np.ndarray] | None:
        return float(self.intercept_), self.coef_

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        out = noise
        out += float(self.intercept_)
        for c, w in zip(columns, self.coef_.tolist(), strict=False):
            out += w * c
        return out


class AdditiveMechanism(LinearMechanism):
    """x = a + Σ b_i·parent_i + noise with each b_i shrunk toward 1, the sum structure (ridge around a prior).

    The posterior mean under the prior b_i ~ N(1, ``prior_scale``²) and Gaussian noise of the least-squares
    residual variance: a parent that moves a lot in the training data gets its least-squares coefficient, a
    parent the data never (or hardly) moves keeps the structural 1 and so passes a change on in full, as a
    callee's latency or error count does to its caller. Plain least squares cannot know that: it sets the
    coefficient of a constant parent to 0 and reads the callee's first jump as the caller's own noise.
    """

    name = "additive"

    def __init__(self, prior_scale: float = 1.0) -> None:
        super().__init__()
        if not prior_scale > 0:
            raise MechanismError(f"prior_scale must be positive, got {prior_scale}")
        self.prior_scale = float(prior_scale)

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        if parents.shape[1] == 0:
            raise MechanismError("the 'additive' mechanism needs at least one parent")
        self.intercept_, self.coef_ = shrunk_least_squares(parents, y, np.ones(parents.shape[1]), self.prior_scale)


def shrunk_least_squares(features: np.ndarray, y: np.ndarray, prior: np.ndarray, prior_scale: float = 1.0
                         ) -> tuple[float, np.ndarray]:
    """(intercept, coefficients) of y on ``features``: the posterior mean under coefficients ~ N(``prior``,
    ``prior_scale``²) and Gaussian noise of the least-squares residual variance. Directions the data determine get
    their least-squares value; directions it leaves open (a feature that never moved, two features that always
    moved together) keep the prior's."""
    k = features.shape[1]
    x_mean, y_mean = features.mean(axis=0), float(y.mean())
    xc, yc = features - x_mean, y - y_mean
    ols, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    dof = max(len(y) - k - 1, 1)
    sigma2 = float(np.sum((yc - xc @ ols) ** 2)) / dof
    sigma2 = max(sigma2, 1e-12 * (1.0 + float(np.var(y))))
    lam = sigma2 / prior_scale ** 2
    coef = np.linalg.solve(xc.T @ xc + lam * np.eye(k), xc.T @ yc + lam * np.asarray(prior, dtype=float))
    return float(y_mean - x_mean @ coef), coef


_TreeGrid = tuple[list[np.ndarray], np.ndarray | None, list[np.ndarray] | None]
TREE_TABLE_MAX = 1 << 18  # cells of a tabulated tree ensemble (one prediction per cell, once per fitted mechanism)
TREE_MAX_INTERACTING = 3  # more parents: the trees are additive in them (each tree splits on one parent)


class NonlinearMechanism(Mechanism):
    """x = f(parents) + noise, f = least-squares line + histogram gradient boosting on its residuals.

    The linear part lets f extrapolate beyond the training range (trees alone are flat there, which would push
    an upstream fault into this node's noise). Runs single-threaded: on a busy 2-core machine OpenMP threads
    make gradient boosting ~20x slower.

    Fast evaluation (``evaluate_columns``, the attribution's hot path): a tree ensemble is constant between
    consecutive split thresholds of each feature, so the trees' output is a function of the cell of the parents'
    values in the grid of all split thresholds. With at most ``TREE_TABLE_MAX`` cells (up to 3 parents with
    ``max_bins=63``) the ensemble is tabulated once, and millions of coalition samples cost one binary search per
    parent and one lookup instead of a walk down 60 trees (with more cells only the distinct cells are predicted).
    With more than ``TREE_MAX_INTERACTING`` parents the trees are fitted without interactions
    (``interaction_cst="no_interactions"``: f = line + Σ g_i(parent_i)), so one small table per parent does; a
    maximum over many parallel callees is ``maxlinear``'s job. Exact: the same values as the ensemble's predict.
    """

    name = "nonlinear"

    def __init__(self, max_iter: int = 60, random_state: int = 0, max_bins: int = 63) -> None:
        super().__init__()
        self.max_iter = max_iter
        self.random_state = random_state
        self.max_bins = max_bins
        self.line_ = LinearMechanism()
        self.model_: HistGradientBoostingRegressor | None = None
        self._grid: _TreeGrid | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_grid"] = None  # rebuilt on first use
        state.pop("_bins", None)
        return state

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        self.line_._fit_f(parents, y)
        additive = parents.shape[1] > TREE_MAX_INTERACTING
        self.model_ = HistGradientBoostingRegressor(max_iter=self.max_iter, random_state=self.random_state,
                                                    max_bins=self.max_bins,
                                                    interaction_cst="no_interactions" if additive else None)
        with _one_thread():
            self.model_.fit(parents, y - self.line_.predict(parents))
        self._grid = None

    def predict(self, parents: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            raise MechanismError("nonlinear mechanism used before fit")
        p = np.asarray(parents, dtype=float)
        with _one_thread():
            return np.asarray(self.model_.predict(p), dtype=float) + self.line_.predict(p)

    def _tree_grid(self) -> _TreeGrid:
        """(split thresholds per parent, tabulated ensemble over their cells or None when too many cells, one table
        per parent when the trees are additive or None)."""
        grid = getattr(self, "_grid", None)
        if grid is not None:
            return grid
        if self.model_ is None:
            raise MechanismError("nonlinear mechanism used before fit")
        k = int(self.model_.n_features_in_)
        used: list[list[np.ndarray]] = [[] for _ in range(k)]
        for per_iter in self.model_._predictors:  # the fitted trees: feature and threshold of every split
            nodes = per_iter[0].nodes
            split = nodes["is_leaf"] == 0
            for f in range(k):
                used[f].append(nodes["num_threshold"][split & (nodes["feature_idx"] == f)])
        thresholds = [_float32_floor(np.unique(np.concatenate(u))) if u else np.empty(0, np.float32) for u in used]
        cells = int(np.prod([t.size + 1 for t in thresholds], dtype=float))
        table = None
        if k > TREE_MAX_INTERACTING:  # additive trees: f = f(ref) + Σ_i [f(ref with parent i's cell) - f(ref)]
            ref = np.array([_cell_values(t)[0] for t in thresholds])
            rows, offsets = [], [0]
            for f, t in enumerate(thresholds):
                block = np.tile(ref, (t.size + 1, 1))
                block[:, f] = _cell_values(t)
                rows.append(block)
                offsets.append(offsets[-1] + t.size + 1)
            with _one_thread():
                pred = np.asarray(self.model_.predict(np.vstack([ref[None, :], *rows])), dtype=float)
            base, parts = pred[0], pred[1:]
            tables = [(parts[offsets[f]:offsets[f + 1]] - base).astype(np.float32) for f in range(k)]
            tables[0] += np.float32(base)
            self._grid = (thresholds, None, tables)
            self._bins = [Bins(t) for t in thresholds]
            return self._grid
        if cells <= TREE_TABLE_MAX:
            reps = [_cell_values(t) for t in thresholds]
            mesh = np.stack(np.meshgrid(*reps, indexing="ij"), axis=-1).reshape(-1, k)
            with _one_thread():
                table = np.asarray(self.model_.predict(mesh), dtype=np.float32)
        self._grid = (thresholds, table, None)
        self._bins = [Bins(t) for t in thresholds]
        return self._grid

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        if not columns:
            return super().evaluate_columns(columns, noise)
        thresholds, table, additive = self._tree_grid()
        if additive is not None:
            out = self.line_.evaluate_columns(columns, noise)
            for c, bins, tab in zip(columns, self._bins, additive, strict=True):
                out += tab[bins(c)]
            return out
        code = np.zeros(noise.size, dtype=np.int64)
        sizes = [t.size + 1 for t in thresholds]
        exact = float(np.prod(sizes, dtype=float)) < 2.0 ** 62
        for c, bins, size in zip(columns, self._bins, sizes, strict=True):
            if exact:
                code *= size
                code += bins(c.reshape(-1))
        if table is not None:
            tree = table[code]
        elif exact:  # too many cells to tabulate: predict each distinct cell once
            uniq, inverse = np.unique(code, return_inverse=True)
            cells = np.stack([_cell_values(t)[idx] for t, idx in zip(thresholds, _unravel(uniq, sizes), strict=True)],
                             axis=1)
            assert self.model_ is not None
            with _one_thread():
                tree = np.asarray(self.model_.predict(cells), dtype=np.float32)[inverse.reshape(-1)]
        else:
            stacked = np.stack([c.reshape(-1) for c in columns], axis=1)
            assert self.model_ is not None
            with _one_thread():
                tree = np.asarray(self.model_.predict(stacked), dtype=np.float32)
        out = self.line_.evaluate_columns(columns, noise)
        out += tree.reshape(noise.shape)
        return out


_CONTROLLER: ThreadpoolController | None = None


def _one_thread() -> Any:
    """Context limiting native thread pools to one thread. The controller (a scan of the loaded libraries, ~10 ms)
    is made once: a fresh ``threadpool_limits`` per predict call cost more than the small predictions it wraps."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


class Bins:
    """Vectorised ``np.searchsorted(thresholds, x, side="left")`` for few sorted float32 thresholds: a uniform
    bucket grid gives a lower bound of the index, a few vectorised steps finish it (a binary search per value
    mispredicts branches on every level; this is several times faster on millions of values)."""

    BUCKETS = 4096

    def __init__(self, thresholds: np.ndarray) -> None:
        t = np.asarray(thresholds, dtype=np.float32)
        self.t = np.append(t, np.float32(np.inf))  # sentinel: a step never runs past the end
        self.size = t.size
        self.lo = float(t[0]) if t.size else 0.0
        span = float(t[-1]) - self.lo if t.size else 0.0
        self.scale = self.BUCKETS / span if span > 0 else 0.0
        if not self.scale:
            self.lut, self.steps = np.zeros(1, dtype=np.int64), 0
            return
        # a value in bucket k = floor((x - lo) * scale) (clipped to -1..BUCKETS) looks up lut[k + 1]: the index of
        # the first threshold >= the start of bucket k - 1 (one bucket of slack for rounding), a lower bound
        p = np.arange(self.BUCKETS + 2)
        lut = np.searchsorted(t, self.lo + (p - 2) / self.scale, side="left").astype(np.int64)
        lut[0] = 0
        self.lut = lut
        # ... and the true index is at most that of the start of bucket k + 2: so many steps finish every value
        upper = np.append(lut[3:], np.full(3, t.size))
        self.steps = int(np.max(upper - lut)) + 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.scale or self.steps > 8:
            return np.searchsorted(self.t[: self.size], x, side="left")
        b = (x - np.float32(self.lo)) * np.float32(self.scale)
        np.clip(b, -1.0, float(self.BUCKETS), out=b)
        idx = self.lut[(b + 1.0).astype(np.int64)]
        for _ in range(self.steps):
            idx += x > self.t[idx]
        return idx


def _float32_floor(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each threshold: for float32 x, x <= t exactly when x <= this value, so the
    attribution's float32 samples are binned without a float64 copy."""
    t32 = thresholds.astype(np.float32)
    above = t32.astype(np.float64) > thresholds
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _cell_values(thresholds: np.ndarray) -> np.ndarray:
    """One value inside each cell of sorted split thresholds: cell b is (t[b-1], t[b]] (trees go left on x <= t),
    the last cell lies above every threshold."""
    if thresholds.size == 0:
        return np.zeros(1)
    return np.append(thresholds, np.nextafter(thresholds[-1], thresholds.dtype.type(np.inf))).astype(np.float64)


def _unravel(codes: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    out = []
    for size in reversed(sizes):
        out.append(codes % size)
        codes = codes // size
    return out[::-1]


class _StructureMechanism(Mechanism):
    """Latency structure with optional per-parent weights (e.g. call counts); own time = x - f(parents)."""

    def __init__(self, weights: Mapping[Hashable, float] | None = None) -> None:
        super().__init__()
        self.weights = dict(weights) if weights else {}
        self.weights_ = np.empty(0)

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        if parents.shape[1] == 0:
            raise MechanismError(f"the '{self.name}' mechanism needs at least one parent")
        unknown = set(self.weights) - set(self.parents_)
        if unknown:
            raise MechanismError(f"weights given for nodes that are not parents: {sorted(map(str, unknown))}")
        self.weights_ = np.array([float(self.weights.get(p, 1.0)) for p in self.parents_] or [1.0] * parents.shape[1])


class SumMechanism(_StructureMechanism):
    """Sequential calls: x = own + Σ w_i·parent_i."""

    name = "sum"

    def predict(self, parents: np.ndarray) -> np.ndarray:
        return np.asarray(parents, dtype=float) @ self.weights_

    def affine_form(self) -> tuple[float, np.ndarray] | None:
        return 0.0, self.weights_

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        out = noise
        for c, w in zip(columns, self.weights_.tolist(), strict=False):
            out += c if w == 1.0 else w * c
        return out


class MaxMechanism(_StructureMechanism):
    """Parallel calls: x = own + max_i w_i·parent_i."""

    name = "max"

    def predict(self, parents: np.ndarray) -> np.ndarray:
        p = np.asarray(parents, dtype=float)
        return (p * self.weights_).max(axis=1) if p.shape[1] > 1 else p[:, 0] * self.weights_[0]

    def affine_form(self) -> tuple[float, np.ndarray] | None:
        return (0.0, self.weights_) if self.weights_.size == 1 else None  # the max of one parent is linear

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        w0 = self.weights_.tolist()
        if len(columns) == 1:
            best = columns[0] * w0[0]
        else:
            best = np.maximum(columns[0] * w0[0], columns[1] * w0[1])
            for c, w in zip(columns[2:], w0[2:], strict=False):
                np.maximum(best, c if w == 1.0 else w * c, out=best)
        noise += best
        return noise


class MaxLinearMechanism(LinearMechanism):
    """x = a + Σ b_i·parent_i + c·max_i parent_i + noise, least squares on the parents and their maximum.

    Linear in two kinds of features, so it represents sequential calls (c = 0, b = 1), parallel calls (b = 0,
    c = 1: the request waits for the slowest callee) and mixtures, fits in one solve and evaluates vectorised.
    Where the rows cannot separate the two (one callee is always the slowest, so it *is* the maximum) the
    coefficients keep the parallel structure (:func:`shrunk_least_squares` around b = 0, c = 1) instead of an
    arbitrary split, so a fault that makes another callee the slowest reaches the caller in full. A plain line cannot represent a maximum: a slow callee that was not on the critical path would move
    the line's prediction, and one that was would leave part of its delay in the caller's noise. With one parent the
    maximum is the parent itself and this is the linear mechanism.
    """

    name = "maxlinear"

    def __init__(self) -> None:
        super().__init__()
        self.max_coef_ = 0.0

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        if parents.shape[1] < 2:
            super()._fit_f(parents, y)
            self.max_coef_ = 0.0
            return
        k = parents.shape[1]
        features = np.column_stack([parents, parents.max(axis=1)])
        prior = np.zeros(k + 1)
        prior[-1] = 1.0  # the parallel structure: own time + the slowest callee
        self.intercept_, sol = shrunk_least_squares(features, y, prior)
        self.coef_, self.max_coef_ = sol[:-1].copy(), float(sol[-1])

    def predict(self, parents: np.ndarray) -> np.ndarray:
        p = np.asarray(parents, dtype=float)
        out = p @ self.coef_ + self.intercept_
        if self.max_coef_ != 0.0:
            out += self.max_coef_ * p.max(axis=1)
        return out

    def affine_form(self) -> tuple[float, np.ndarray] | None:
        return super().affine_form() if self.max_coef_ == 0.0 else None

    def evaluate_columns(self, columns: list[np.ndarray], noise: np.ndarray) -> np.ndarray:
        out = super().evaluate_columns(columns, noise)
        if self.max_coef_ != 0.0 and columns:
            best = columns[0].copy() if len(columns) == 1 else np.maximum(columns[0], columns[1])
            for c in columns[2:]:
                np.maximum(best, c, out=best)
            out += self.max_coef_ * best
        return out


AUTO_MAX_ROWS = 5000  # rows used to choose a mechanism (the chosen one is then fitted on all rows)
AUTO_MIN_ROWS = 100  # fewer rows: linear (a hold-out of < 20 rows cannot show that anything richer is better)
AUTO_Z = 2.0  # a richer mechanism must beat the simpler one by this many standard errors on held-out rows
AUTO_MIN_GAIN = 0.02  # ... and by this share of the simpler one's held-out mean squared error
AUTO_FOLDS = 5  # cross-validation folds of the comparison (every row held out once)


def parallel_callers(parents: np.ndarray, y: np.ndarray) -> bool:
    """Do the rows show a caller waiting for parallel callees: at or above the largest parent in (nearly) every row
    (>= 99 %), but below the sum of the parents in more than 1 % of the rows?

    A caller's latency is its own time plus its calls: sequential calls put it at or above the sum of the callees'
    latencies in every row, so a caller often faster than that sum cannot be calling them one after another, while
    waiting for each call keeps it at or above the slowest one. Metric tables of any other kind rarely pass both.
    """
    if parents.shape[1] < 2 or len(y) == 0:
        return False
    above_max = float(np.mean(y >= parents.max(axis=1)))
    below_sum = float(np.mean(y < parents.sum(axis=1)))
    return above_max >= 0.99 and below_sum > 0.01


def auto_candidates(n_parents: int, parallel: bool = False) -> list[type[Mechanism]]:
    """``auto``'s candidates, simplest first: linear, linear + maximum (>= 2 parents), gradient boosting; for
    ``parallel`` callers (:func:`parallel_callers`) linear + maximum first (a line cannot represent them)."""
    out: list[type[Mechanism]] = [] if parallel and n_parents >= 2 else [LinearMechanism]
    if n_parents >= 2:
        out.append(MaxLinearMechanism)
    out.append(NonlinearMechanism)
    return out


def clearly_better(errors_rich: np.ndarray, errors_simple: np.ndarray, z: float = AUTO_Z,
                   min_gain: float = AUTO_MIN_GAIN) -> bool:
    """Is the richer model's held-out squared error clearly lower than the simpler one's, row by row?

    Paired test on the same held-out rows: the mean improvement must exceed ``z`` standard errors of the paired
    differences (a one-sided test at about 2 %) and ``min_gain`` of the simpler model's error (a difference too
    small to matter is not worth a slower, less extrapolating mechanism).
    """
    d = np.asarray(errors_simple, dtype=float) - np.asarray(errors_rich, dtype=float)
    if d.size < 2:
        return False
    gain = float(d.mean())
    se = float(d.std(ddof=1)) / np.sqrt(d.size)
    return gain > z * se and gain > min_gain * float(np.mean(errors_simple))


def held_out_errors(cls: type[Mechanism], parents: np.ndarray, y: np.ndarray, folds: list[np.ndarray],
                    rival: np.ndarray | None = None) -> np.ndarray | None:
    """Squared error of every row of ``folds`` (in fold order) predicted by ``cls`` fitted on the other folds.

    With ``rival`` (the current choice's errors, same order): None as soon as the first fold shows no gain over it
    (a futility stop: a candidate no better on a fifth of the rows is very rarely clearly better on all of them, and
    linear data then costs one gradient-boosting fit instead of five)."""
    out: list[np.ndarray] = []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        m = cls()
        m.fit(parents[train], y[train])
        out.append((y[test] - m.predict(parents[test])) ** 2)
        if k == 0 and rival is not None and float(out[0].mean()) >= float(rival[: test.size].mean()):
            return None
    return np.concatenate(out)


def select_auto(parents: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                max_rows: int = AUTO_MAX_ROWS, n_folds: int = AUTO_FOLDS) -> Mechanism:
    """The simplest candidate that no richer one clearly beats on held-out rows (``n_folds``-fold cross-validation
    on at most 5,000 rows: every row is held out once).

    Candidates, simplest first: linear, linear + maximum of the parents (``maxlinear``, for parallel callers),
    gradient boosting (``nonlinear``). A richer candidate replaces the current choice only when its held-out
    squared errors are lower by more than 2 paired standard errors and 2 % (:func:`clearly_better`), so linear data
    keeps linear mechanisms (fast, exact affine attribution, extrapolating) and a smallest-error rule cannot pick
    gradient boosting for noise. Unlike DoWhy's ``auto.assign_causal_mechanisms``, which takes the smallest error.
    Every row held out once (rather than one 20 % split) gives the test the power of all the rows: the gain of the
    maximum is carried by the few rows where a usually faster parallel callee is the slowest, and one split's
    share of them is too small to show it. Fewer than 100 rows -> linear.
    """
    n = len(y)
    if n < AUTO_MIN_ROWS:
        return LinearMechanism()
    idx = rng.permutation(n)[:max_rows]
    folds = list(np.array_split(idx, n_folds))
    best: type[Mechanism] | None = None
    best_err = np.empty(0)
    for cls in auto_candidates(parents.shape[1], parallel_callers(parents, y)):
        err = held_out_errors(cls, parents, y, folds, None if best is None else best_err)
        if err is not None and (best is None or clearly_better(err, best_err)):
            best, best_err = cls, err
    assert best is not None
    return best()


def make_mechanism(spec: str | Mechanism, is_root: bool) -> Mechanism | None:
    """Fresh mechanism for a name (None for 'auto' on a non-root, decided from data) or a given instance."""
    if isinstance(spec, Mechanism):
        return spec
    if not isinstance(spec, str) or spec not in MECHANISM_NAMES:
        raise MechanismError(f"unknown mechanism {spec!r}; choose one of {', '.join(MECHANISM_NAMES)}")
    if is_root:
        if spec not in MECHANISM_NAMES:
            raise MechanismError(f"unknown mechanism {spec!r}")
        return EmpiricalMechanism()
    factories: dict[str, type[Mechanism]] = {
        "linear": LinearMechanism,
        "additive": AdditiveMechanism,
        "maxlinear": MaxLinearMechanism,
        "nonlinear": NonlinearMechanism,
        "sum": SumMechanism,
        "max": MaxMechanism,
    }
    if spec == "empirical":
        raise MechanismError("the 'empirical' mechanism is only for root nodes")
    if spec == "auto":
        return None
    return factories[spec]()
