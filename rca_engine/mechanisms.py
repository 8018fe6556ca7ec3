"""Causal mechanisms: how a node's value arises from its parents and its own noise (additive noise models).

Every mechanism is a small scikit-learn style estimator: ``fit(parents, y)`` then the vectorised
``predict(parents)`` (the deterministic part f), ``noise(parents, y) = y - f(parents)`` (noise reconstruction)
and ``evaluate(parents, noise) = f(parents) + noise``. The noise distribution is the empirical distribution of
the training residuals (``noise_samples_``), as in DoWhy's AdditiveNoiseModel.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

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
        k = parents.shape[1]
        if k == 0:
            raise MechanismError("the 'additive' mechanism needs at least one parent")
        x_mean, y_mean = parents.mean(axis=0), float(y.mean())
        xc, yc = parents - x_mean, y - y_mean
        ols, *_ = np.linalg.lstsq(xc, yc, rcond=None)
        dof = max(len(y) - k - 1, 1)
        sigma2 = float(np.sum((yc - xc @ ols) ** 2)) / dof
        sigma2 = max(sigma2, 1e-12 * (1.0 + float(np.var(y))))
        lam = sigma2 / self.prior_scale ** 2
        prior = np.ones(k)
        gram = xc.T @ xc + lam * np.eye(k)
        self.coef_ = np.linalg.solve(gram, xc.T @ yc + lam * prior)
        self.intercept_ = float(y_mean - x_mean @ self.coef_)


class NonlinearMechanism(Mechanism):
    """x = f(parents) + noise, f = least-squares line + histogram gradient boosting on its residuals.

    The linear part lets f extrapolate beyond the training range (trees alone are flat there, which would push
    an upstream fault into this node's noise). Runs single-threaded: on a busy 2-core machine OpenMP threads
    make gradient boosting ~20x slower.
    """

    name = "nonlinear"

    def __init__(self, max_iter: int = 60, random_state: int = 0) -> None:
        super().__init__()
        self.max_iter = max_iter
        self.random_state = random_state
        self.line_ = LinearMechanism()
        self.model_: HistGradientBoostingRegressor | None = None

    def _fit_f(self, parents: np.ndarray, y: np.ndarray) -> None:
        self.line_._fit_f(parents, y)
        self.model_ = HistGradientBoostingRegressor(max_iter=self.max_iter, random_state=self.random_state)
        with threadpool_limits(1):
            self.model_.fit(parents, y - self.line_.predict(parents))

    def predict(self, parents: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            raise MechanismError("nonlinear mechanism used before fit")
        p = np.asarray(parents, dtype=float)
        with threadpool_limits(1):
            return np.asarray(self.model_.predict(p), dtype=float) + self.line_.predict(p)


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
    c = 1: the request waits for the slowest callee) and mixtures, fits in one least-squares solve and evaluates
    vectorised. A plain line cannot represent a maximum: a slow callee that was not on the critical path would move
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
        design = np.column_stack([np.ones(len(y)), parents, parents.max(axis=1)])
        sol, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.intercept_, self.coef_, self.max_coef_ = float(sol[0]), sol[1:-1].copy(), float(sol[-1])

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


def auto_candidates(n_parents: int) -> list[type[Mechanism]]:
    """``auto``'s candidates, simplest first: linear, linear + maximum (>= 2 parents), gradient boosting."""
    out: list[type[Mechanism]] = [LinearMechanism]
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


def select_auto(parents: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                max_rows: int = AUTO_MAX_ROWS) -> Mechanism:
    """The simplest candidate that no richer one clearly beats on held-out rows (20 % of at most 5,000 rows).

    Candidates, simplest first: linear, linear + maximum of the parents (``maxlinear``, for parallel callers),
    gradient boosting (``nonlinear``). A richer candidate replaces the current choice only when its held-out
    squared errors are lower by more than 2 paired standard errors and 2 % (:func:`clearly_better`), so linear data
    keeps linear mechanisms (fast, exact affine attribution, extrapolating) and a smallest-error rule cannot pick
    gradient boosting for noise. Unlike DoWhy's ``auto.assign_causal_mechanisms``, which takes the smallest error.
    Fewer than 100 rows -> linear.
    """
    n = len(y)
    if n < AUTO_MIN_ROWS:
        return LinearMechanism()
    idx = rng.permutation(n)[:max_rows]
    cut = int(len(idx) * 0.8)
    train, test = idx[:cut], idx[cut:]
    best: type[Mechanism] | None = None
    best_err = np.empty(0)
    for cls in auto_candidates(parents.shape[1]):
        m = cls()
        m.fit(parents[train], y[train])
        err = (y[test] - m.predict(parents[test])) ** 2
        if best is None or clearly_better(err, best_err):
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
