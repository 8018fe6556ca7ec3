"""rca_engine.tails: counting and fitted-tail estimates of log P(Y >= t) against direct counts and known laws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import expon, norm

from rca_engine import tails


def test_tail_size_is_ten_percent_within_its_bounds() -> None:
    # at least 30, at most 1000, never the whole sample
    expected = {1: 1, 2: 1, 10: 9, 31: 30, 100: 30, 300: 30, 5_000: 500, 10_000: 1000, 1_000_000: 1000}
    assert {m: tails.tail_size(m) for m in expected} == expected


def test_top_values_are_the_k_largest_per_row_descending() -> None:
    y = np.random.default_rng(0).normal(size=(4, 50))
    top = tails.top_values(y, 7)
    np.testing.assert_array_equal(top, np.sort(y, axis=1)[:, ::-1][:, :7])
    assert tails.top_values(y[0], 80).shape == (1, 50)  # k is capped by the sample size


def test_dowhy_method_is_the_smoothed_count() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(3, 200))
    t = np.array([-1.0, 0.5, 9.0])
    expected = [np.log((np.sum(y[i] >= t[i]) + 0.5) / 200.5) for i in range(3)]
    np.testing.assert_allclose(tails.upper_log_prob(y, t, method="dowhy"), expected, rtol=1e-12)
    expected_low = [np.log((np.sum(y[i] <= t[i]) + 0.5) / 200.5) for i in range(3)]
    np.testing.assert_allclose(tails.lower_log_prob(y, t, method="dowhy"), expected_low, rtol=1e-12)


def test_fitted_method_counts_while_enough_samples_reach_the_threshold() -> None:
    y = np.random.default_rng(2).exponential(size=(1, 1000))
    for t in (0.0, 0.5, 2.0, np.sort(y[0])[-tails.K_SWITCH]):
        count = np.sum(y[0] >= t)
        assert count >= tails.K_SWITCH
        assert tails.upper_log_prob(y, t)[0] == pytest.approx(np.log(count / 1000), rel=1e-12)


@pytest.mark.parametrize(("law", "sample"), [
    (norm, lambda rng: rng.normal(size=20_000)),
    (expon, lambda rng: rng.exponential(size=20_000)),
])
def test_fitted_tail_follows_the_true_law_beyond_the_counting_range(law, sample) -> None:
    y = sample(np.random.default_rng(3))[None, :]
    # from the 10th largest value to just past the largest: counting is coarse there, the fit is not
    ts = np.linspace(np.sort(y[0])[-tails.K_SWITCH], y.max() * 1.02, 12)
    est = np.array([tails.upper_log_prob(y, t)[0] for t in ts])
    truth = law.logsf(ts)
    assert np.max(np.abs(est - truth)) < 0.6, (est, truth)
    dowhy = tails.upper_log_prob(y, ts[-1], method="dowhy")[0]
    assert est[-1] < dowhy  # beyond the sample the counting estimator is capped, the fit keeps ranking


def test_far_beyond_the_sample_the_fit_is_finite_strictly_decreasing_and_at_most_exponential() -> None:
    y = np.random.default_rng(4).normal(size=(1, 5_000))
    ts = y.max() + np.array([1.0, 5.0, 50.0, 500.0, 5e4])
    est = np.array([tails.upper_log_prob(y, t)[0] for t in ts])
    assert np.all(np.isfinite(est)) and np.all(np.diff(est) < 0)
    assert np.all(est[1:] > norm.logsf(ts[1:]))  # conservative: never a squared distance (Gaussian tail) far out
    slopes = np.diff(est) / np.diff(ts)
    np.testing.assert_allclose(slopes[1:], slopes[1], rtol=1e-9)  # linear in t: the tangent line


def test_lower_tail_is_the_upper_tail_of_the_negated_sample() -> None:
    y = np.random.default_rng(5).lognormal(size=(2, 400))
    t = np.array([0.05, 0.3])
    np.testing.assert_allclose(tails.lower_log_prob(y, t), tails.upper_log_prob(-y, -t), rtol=1e-12)


def test_fit_log_survival_recovers_an_exactly_exponential_tail() -> None:
    m, k = 1000, 100
    top = -np.log((np.arange(1, k + 1) - 0.5) / m)  # the exponential quantiles of the plotting positions
    u, s, coef = tails.fit_log_survival(top[None, :], m)
    assert u[0] == top[-1] and s[0] == pytest.approx(top[0] - top[-1])
    np.testing.assert_allclose(coef[0], [u[0], s[0], 0.0], atol=1e-6)  # -log S(y) = y = u + s z


def test_neg_log_survival_continues_along_its_tangent_and_inverts() -> None:
    coef = np.array([2.0, 3.0, 0.5])
    z = np.array([-0.5, 0.0, 0.7, 1.0, 1.5, 4.0])
    h = tails.neg_log_survival(z, coef)
    quad = 2.0 + 3.0 * z + 0.5 * z**2
    np.testing.assert_allclose(h[z <= 1], quad[z <= 1])
    np.testing.assert_allclose(h[z > 1], 5.5 + 4.0 * (z[z > 1] - 1.0))  # value 5.5 and slope 4 at z = 1
    np.testing.assert_allclose(tails.inverse_neg_log_survival(h[1:], coef), z[1:], atol=1e-12)
    line = np.array([1.0, 2.0, 0.0])
    np.testing.assert_allclose(tails.inverse_neg_log_survival(tails.neg_log_survival(z, line), line), z, atol=1e-12)


def test_a_repeated_maximum_is_an_atom_and_caps_the_probability_beyond_it() -> None:
    m = 500
    counts = np.r_[np.zeros(450), np.full(50, 3.0)]  # discrete data: 10 % at the maximum
    top = tails.top_values(counts[None, :], tails.tail_size(m))
    assert tails.extreme_is_atom(top, m).tolist() == [True]
    resampled = np.sort(np.random.default_rng(6).normal(size=m))[::-1][None, :30]
    assert tails.extreme_is_atom(resampled, m).tolist() == [False]
    beyond = tails.upper_log_prob(counts[None, :], 3.5)[0]
    assert beyond == pytest.approx(np.log(0.5 / (m + 0.5)))  # nothing ever exceeded the atom: DoWhy's cap
    assert tails.beyond_sample_cap(np.array([0, 3]), m, np.array([False, True])).tolist() == pytest.approx(
        [np.log(tails.K_SWITCH / m)] * 2)
    const = np.full((1, 200), 7.0)
    assert tails.upper_log_prob(const, 7.0)[0] == 0.0
    assert tails.upper_log_prob(const, 8.0)[0] == pytest.approx(np.log(0.5 / 200.5))


@pytest.mark.parametrize("method", ["fitted", "dowhy"])
def test_sorted_tail_agrees_with_the_row_estimators(method: str) -> None:
    ref = np.sort(np.random.default_rng(7).gamma(2.0, size=3_000))
    tail = tails.SortedTail(ref, method)
    ts = np.r_[np.quantile(ref, [0.0, 0.001, 0.01, 0.5, 0.99, 0.999]), ref[0] - 0.3, ref[-1] + [0.0, 0.5, 3.0, 30.0]]
    up = np.array([tails.upper_log_prob(ref[None, :], t, method)[0] for t in ts])
    lo = np.array([tails.lower_log_prob(ref[None, :], t, method)[0] for t in ts])
    np.testing.assert_allclose(tail.upper_log_prob(ts), up, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tail.lower_log_prob(ts), lo, rtol=1e-9, atol=1e-12)


def test_sorted_tail_quantiles_invert_the_log_probabilities() -> None:
    ref = np.sort(np.random.default_rng(8).normal(size=4_000))
    tail = tails.SortedTail(ref)
    log_p = np.log([0.3, 0.05, 0.01, 1e-3, 1e-5, 1e-9])
    up = tail.upper_quantile(log_p)
    lo = tail.lower_quantile(log_p)
    assert np.all(np.diff(up) > 0) and np.all(np.diff(lo) < 0)
    counted = log_p > np.log(tails.K_SWITCH / ref.size)
    np.testing.assert_allclose(np.mean(ref[None, :] >= up[counted, None], axis=1), np.exp(log_p[counted]), rtol=0.05)
    far = ~counted
    assert np.all(up[far] > ref[-1]) and np.all(lo[far] < ref[0])  # rarer than the sample: beyond it
    fitted = log_p < np.log(1.0 / ref.size)  # rarer than one sample: the fitted tail itself, inverted
    np.testing.assert_allclose(tail.upper_log_prob(up[fitted]), log_p[fitted], rtol=1e-6)
    np.testing.assert_allclose(tail.lower_log_prob(lo[fitted]), log_p[fitted], rtol=1e-6)
