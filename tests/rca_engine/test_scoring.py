"""rca_engine.scoring: IT outlier scores -log P(g(X) >= g(x)) against brute-force counts over the reference."""

from __future__ import annotations

import numpy as np
import pytest

from rca_engine import tails
from rca_engine.errors import RCAError
from rca_engine.scoring import (
    BASE_SCORES,
    ITScorer,
    check_options,
    coalition_log_prob,
    median_rank,
    rank_event_bounds,
)


def brute_rank(ref: np.ndarray, v: float) -> float:
    """DoWhy's two-sided rank of v: min(#below, #above) + (#equal + 1) / 2, by counting."""
    below, above, equal = np.sum(ref < v), np.sum(ref > v), np.sum(ref == v)
    return float(min(below, above) + (equal + 1) / 2.0)


def brute_g(ref: np.ndarray, base: str, v: np.ndarray) -> np.ndarray:
    """The base score g, larger = more unusual (median: minus the rank)."""
    if base == "upper":
        return np.asarray(v, dtype=float)
    if base == "zscore":
        return np.abs(np.asarray(v) - ref.mean()) / ref.std()
    return -np.array([brute_rank(ref, x) for x in np.atleast_1d(v)])


@pytest.fixture(scope="module")
def ties() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.sort(np.r_[rng.integers(0, 12, 300).astype(float), rng.normal(5.0, 3.0, 200)])


def test_unknown_options_are_refused() -> None:
    check_options("upper", "dowhy")
    with pytest.raises(RCAError, match="unknown base score 'mad'; choose one of median, zscore, upper"):
        check_options("mad", "fitted")
    with pytest.raises(RCAError, match="unknown tail estimator 'gpd'"):
        ITScorer("median", "gpd")


def test_median_rank_counts_below_above_and_ties(ties: np.ndarray) -> None:
    values = np.r_[ties[::17], -5.0, 3.5, 100.0]
    np.testing.assert_array_equal(median_rank(ties, values), [brute_rank(ties, v) for v in values])


def test_rank_event_bounds_are_the_set_of_values_ranked_at_most_as_high(ties: np.ndarray) -> None:
    uniq = np.unique(ties)
    probe = np.r_[uniq, (uniq[1:] + uniq[:-1]) / 2, uniq[0] - 1, uniq[-1] + 1]
    ranks = median_rank(ties, probe)
    for x_rank in (0.5, 1.0, 3.0, 40.5, 120.0, float(ranks.max()), float(ranks.max()) + 1):
        lo, lo_strict, hi, hi_strict = rank_event_bounds(ties, x_rank)
        below = probe < lo if lo_strict else probe <= lo
        above = probe > hi if hi_strict else probe >= hi
        np.testing.assert_array_equal(below | above, ranks <= x_rank + 1e-12, err_msg=f"x_rank={x_rank}")


@pytest.mark.parametrize("base", BASE_SCORES)
def test_dowhy_tail_is_the_smoothed_count_of_reference_values_at_least_as_unusual(base: str, ties: np.ndarray) -> None:
    scorer = ITScorer(base, "dowhy").fit(np.random.default_rng(1).permutation(ties))  # fit sorts
    x = np.array([ties[-1] + 0.5, 2.0, 5.0, 7.25, 11.0, 30.0, -4.0])
    g_ref, g_x = brute_g(ties, base, ties), brute_g(ties, base, x)
    count = np.array([np.sum(g_ref >= gx - 1e-12) for gx in g_x])
    np.testing.assert_allclose(scorer.score(x), -np.log((count + 0.5) / (ties.size + 0.5)), rtol=1e-12)


def test_zscore_counts_the_reference_value_itself(ties: np.ndarray) -> None:
    scorer = ITScorer("zscore", "dowhy").fit(ties)
    g_ref = brute_g(ties, "zscore", ties)
    count = np.sum(g_ref >= g_ref[0])  # ties[0] is the smallest value, the reference's most unusual on its side
    assert count >= 1
    assert scorer.score([ties[0]])[0] == pytest.approx(-np.log((count + 0.5) / (ties.size + 0.5)), rel=1e-12)


def test_fitted_upper_score_counts_while_enough_reference_values_exceed() -> None:
    ref = np.random.default_rng(2).lognormal(size=2000)
    scorer = ITScorer("upper").fit(ref)
    x = np.quantile(ref, [0.0, 0.3, 0.9, 0.99])
    expected = [-np.log(np.mean(ref >= v)) for v in x]
    np.testing.assert_allclose(scorer.score(x), expected, rtol=1e-12)
    assert scorer.score([ref.min() - 1.0])[0] == 0.0  # unusually fast is nothing to explain
    far = scorer.score(ref.max() + np.array([0.0, 1.0, 10.0]))
    assert np.all(np.diff(far) > 0) and far[0] >= np.log(2000 / tails.K_SWITCH)


def test_fitted_two_sided_scores_are_symmetric_and_counted(ties: np.ndarray) -> None:
    ref = np.random.default_rng(3).normal(10.0, 2.0, 4000)
    z = ITScorer("zscore").fit(ref)
    a, b = z.thresholds(np.array([7.0, 13.0]))
    np.testing.assert_allclose(a + b, 2 * ref.mean())
    np.testing.assert_allclose(z.score([7.0]), -np.log(np.mean(np.abs(ref - ref.mean()) >= abs(7.0 - ref.mean()))),
                               rtol=1e-9)
    med = ITScorer("median").fit(ref)
    for v in (6.0, 13.5):  # twice the one-sided tail beyond v
        side = np.mean(ref >= v) if v > np.median(ref) else np.mean(ref <= v)
        assert med.score([v])[0] == pytest.approx(-np.log(2 * side), rel=1e-9)
    assert med.score([np.median(ref)])[0] == 0.0
    lo, hi = med.thresholds(np.array([13.5]))
    assert np.mean(ref <= lo[0]) == pytest.approx(np.mean(ref >= 13.5), abs=2e-3)  # same tail mass on both sides
    assert hi[0] == 13.5


def test_coalition_log_prob_counts_rows_of_monte_carlo_values(ties: np.ndarray) -> None:
    scorer = ITScorer("median", "dowhy").fit(ties)
    y = np.random.default_rng(4).normal(5.0, 4.0, (3, 500))
    a, b = 1.0, 9.5
    count = ((y <= a) | (y >= b)).sum(axis=1)
    np.testing.assert_allclose(coalition_log_prob(y, scorer, a, b), np.log((count + 0.5) / 500.5))
    x_rank = float(median_rank(ties, np.array([10.0]))[0])
    ranked = np.array([[brute_rank(ties, v) <= x_rank + 1e-12 for v in row] for row in y]).sum(axis=1)
    np.testing.assert_allclose(coalition_log_prob(y, scorer, a, b, x_rank=x_rank), np.log((ranked + 0.5) / 500.5))
    fitted = coalition_log_prob(y, scorer, a, b, method="fitted")
    expected = np.minimum(np.logaddexp(tails.lower_log_prob(y, a), tails.upper_log_prob(y, b)), 0.0)
    np.testing.assert_allclose(fitted, expected)
    only_upper = coalition_log_prob(y, ITScorer("upper").fit(ties), -np.inf, b)
    np.testing.assert_allclose(only_upper, np.minimum(tails.upper_log_prob(y, b), 0.0))
