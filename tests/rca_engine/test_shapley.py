"""rca_engine.shapley: exact and sampled Shapley values against the brute-force permutation formula."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest

from rca_engine import shapley


class TableGame:
    """A set function given by a table of 2^n values (indexed by the coalition's bit code); counts its calls."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.n = int(np.log2(table.size))
        self.calls: list[int] = []

    def __call__(self, coal: np.ndarray) -> np.ndarray:
        assert coal.dtype == bool and coal.shape[1] == self.n
        self.calls.append(coal.shape[0])
        return self.table[coal.astype(np.int64) @ (1 << np.arange(self.n))]

    def brute_force(self) -> np.ndarray:
        """phi_i = 1/n! sum over all orderings of i's marginal contribution to the players before it."""
        phi = np.zeros(self.n)
        for order in itertools.permutations(range(self.n)):
            code = 0
            for player in order:
                phi[player] += self.table[code | (1 << player)] - self.table[code]
                code |= 1 << player
        return phi / factorial(self.n)


def random_game(n: int, seed: int) -> TableGame:
    return TableGame(np.random.default_rng(seed).normal(0.0, 1.0, 2**n))


def additive_game(weights: np.ndarray) -> TableGame:
    n = weights.size
    codes = np.arange(2**n)
    members = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    return TableGame(members @ weights + 0.5)


def test_all_coalitions_lists_every_subset_once_by_bit_code() -> None:
    for n in (1, 3, 5):
        coal = shapley.all_coalitions(n)
        assert coal.shape == (2**n, n) and coal.dtype == bool
        as_sets = [frozenset(np.flatnonzero(row)) for row in coal]
        expected = [frozenset(s) for k in range(n + 1) for s in itertools.combinations(range(n), k)]
        assert len(set(as_sets)) == 2**n and set(as_sets) == set(expected)
        for code, row in enumerate(coal):
            assert all(bool(code >> i & 1) == row[i] for i in range(n))


@pytest.mark.parametrize(("n", "seed"), [(2, 0), (3, 1), (4, 2), (6, 3)])
def test_exact_equals_the_permutation_formula_in_one_batch(n: int, seed: int) -> None:
    game = random_game(n, seed)
    phi = shapley.exact(game, n, game.table[0], game.table[-1])
    np.testing.assert_allclose(phi, game.brute_force(), rtol=1e-12, atol=1e-12)
    assert phi.sum() == pytest.approx(game.table[-1] - game.table[0], abs=1e-12)
    assert game.calls == [2**n - 2]  # the proper coalitions, evaluated in a single call


def test_exact_with_one_player_needs_no_evaluation() -> None:
    game = TableGame(np.array([1.5, 4.0]))
    assert shapley.exact(game, 1, 1.5, 4.0).tolist() == [2.5]
    assert game.calls == []


def test_exact_gives_symmetric_players_equal_shares_and_a_null_player_zero() -> None:
    # v(S) = 1 if players 0 and 1 are both in S (a unanimity game); player 2 never matters
    codes = np.arange(8)
    game = TableGame(((codes & 0b011) == 0b011).astype(float))
    np.testing.assert_allclose(shapley.exact(game, 3, 0.0, 1.0), [0.5, 0.5, 0.0], atol=1e-15)


def test_permutation_sampling_converges_to_the_brute_force_values() -> None:
    n = 6
    game = random_game(n, 7)
    truth = game.brute_force()
    phi, used = shapley.permutation(game, n, game.table[0], game.table[-1], np.random.default_rng(0),
                                    max_permutations=4096, tolerance=0.002)
    scale = abs(game.table[-1] - game.table[0])
    assert phi.sum() == pytest.approx(game.table[-1] - game.table[0], abs=1e-9)  # efficiency holds per permutation
    assert np.max(np.abs(phi - truth)) < 0.05 * max(scale, np.abs(truth).max())
    assert used % 16 == 0 and 32 <= used <= 4096


def test_permutation_on_an_additive_game_stops_at_the_minimum_and_is_exact() -> None:
    weights = np.array([3.0, -1.0, 0.0, 2.5, 0.25])
    game = additive_game(weights)
    phi, used = shapley.permutation(game, 5, game.table[0], game.table[-1], np.random.default_rng(1),
                                    batch=4, min_permutations=16)
    np.testing.assert_allclose(phi, weights, atol=1e-12)
    assert used == 16  # zero variance: the stopping rule ends at min_permutations


def test_permutation_stops_at_the_maximum_and_evaluates_each_coalition_once() -> None:
    n = 4
    game = random_game(n, 11)
    _, used = shapley.permutation(game, n, game.table[0], game.table[-1], np.random.default_rng(2),
                                  batch=2, min_permutations=4, max_permutations=40, tolerance=0.0)
    assert used == 40
    assert sum(game.calls) <= 2**n - 2  # the cache never asks for a coalition twice


def test_halton_permutations_are_efficient_exact_on_additive_games_and_close_otherwise() -> None:
    weights = np.array([1.0, 2.0, -0.5, 0.0])
    game = additive_game(weights)
    phi = shapley.halton_permutations(game, 4, game.table[0], game.table[-1], num_permutations=10, seed=0)
    np.testing.assert_allclose(phi, weights, atol=1e-12)

    game = random_game(6, 5)
    phi = shapley.halton_permutations(game, 6, game.table[0], game.table[-1], num_permutations=600, seed=0)
    assert phi.sum() == pytest.approx(game.table[-1] - game.table[0], abs=1e-9)
    truth = game.brute_force()
    assert np.max(np.abs(phi - truth)) < 0.1 * np.abs(truth).max()
    again = shapley.halton_permutations(game, 6, game.table[0], game.table[-1], num_permutations=600, seed=0)
    assert np.array_equal(phi, again)  # a seeded Halton sequence: reproducible
