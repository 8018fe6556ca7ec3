"""The call structure as players of distribution_change: a changed call count and a new call are CallEdge players.

Synthetic periods of the call graph front -> a, front -> b, b -> db, front -> new (structure "sum") where a
request's database time is (calls of db) x (own time per call), drawn independently of everything else. The
independent reference is a brute-force Shapley value over the few players computed from fresh large Monte Carlo
samples of the same generator (own code, not the engine's simulation): v(S) = statistic of front with the players
in S drawn as in the comparison period.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import numpy as np
import pandas as pd
import pytest

import rca_engine
from rca_engine import CallEdge

GRAPH = rca_engine.invert_call_graph([("front", "a"), ("front", "b"), ("b", "db"), ("front", "new")])
N = 2000
DB_EDGE = CallEdge(callers=("b",), callee="db")
NEW_EDGE = CallEdge(callers=("front",), callee="new")


def draw(n: int, rng: np.random.Generator, *, db_calls: int = 1, a: float = 1.0, new: bool = False,
         db_slow: float = 1.0) -> dict[str, np.ndarray]:
    """Per-request factors: own times per call and calls per request (``db_calls`` on 70 % of the requests with
    more than one, the rest 1; ``new``: a call to `new` on every request)."""
    calls_db = np.where(rng.random(n) < 0.7, db_calls, 1).astype(float)
    return {"front": rng.gamma(2.0, 2.0, n), "a": rng.gamma(3.0, 4.0, n) * a, "b": rng.gamma(2.0, 3.0, n),
            "db_per_call": rng.gamma(2.0, 5.0, n) * db_slow, "db_calls": calls_db,
            "new": rng.gamma(2.0, 10.0, n) if new else np.zeros(n), "new_calls": np.full(n, 1.0 if new else 0.0)}


def tables(f: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latencies, calls per request) of the nodes."""
    db = f["db_calls"] * f["db_per_call"]
    b = f["b"] + db
    lat = pd.DataFrame({"a": f["a"], "db": db, "b": b, "new": f["new"], "front": f["front"] + f["a"] + b + f["new"]})
    ones = np.ones(len(db))
    counts = pd.DataFrame({"a": ones, "db": f["db_calls"], "b": ones, "new": f["new_calls"], "front": ones})
    return lat, counts


def front(f: dict[str, np.ndarray]) -> np.ndarray:
    return f["front"] + f["a"] + f["b"] + f["db_calls"] * f["db_per_call"] + f["new"]


def brute_force(old: dict[str, np.ndarray], new: dict[str, np.ndarray], players: dict[str, list[str]],
                stat: Callable[[np.ndarray], float]) -> dict[str, float]:
    """Shapley values by enumerating the orderings: a player switches its factors (keys) to the comparison."""
    names = list(players)

    def value(coalition: frozenset[str]) -> float:
        f = dict(old)
        for p in coalition:
            for key in players[p]:
                f[key] = new[key]
        return stat(front(f))

    cache: dict[frozenset[str], float] = {}
    phi = dict.fromkeys(names, 0.0)
    orders = list(permutations(names))
    for order in orders:
        have: frozenset[str] = frozenset()
        for p in order:
            for s in (have, have | {p}):
                if s not in cache:
                    cache[s] = value(s)
            phi[p] += (cache[have | {p}] - cache[have]) / len(orders)
            have = have | {p}
    return phi


def p95(x: np.ndarray) -> float:
    return float(np.quantile(x, 0.95))


def periods(seed: int, **change: object) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    b, bc = tables(draw(N, rng))
    c, cc = tables(draw(N, rng, **change))  # type: ignore[arg-type]
    return b, c, bc, cc


def reference(players: dict[str, list[str]], stat: Callable[[np.ndarray], float], **change: object
              ) -> dict[str, float]:
    n = 1_000_000
    old = draw(n, np.random.default_rng(7))
    new = draw(n, np.random.default_rng(8), **change)  # type: ignore[arg-type]
    return brute_force(old, new, players, stat)


def test_changed_call_count_is_the_edge_not_the_callee():
    base, comp, bc, cc = periods(11, db_calls=3)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p95", mechanisms="sum",
                                       call_counts=(bc, cc))
    assert r.root_causes[0] == DB_EDGE and str(DB_EDGE) == "b→db"
    assert r.kinds[DB_EDGE] == "changed" and r.p_values[DB_EDGE] < 1e-6
    assert abs(r.contributions.get("db", 0.0)) < 0.05 * r.contributions[DB_EDGE]  # its own time per call held
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
    truth = reference({"edge": ["db_calls"]}, p95, db_calls=3)
    assert r.contributions[DB_EDGE] == pytest.approx(truth["edge"], rel=0.12)
    lo, hi = r.intervals[DB_EDGE]
    assert lo < r.contributions[DB_EDGE] < hi


def test_call_count_and_a_slower_service_split_against_brute_force():
    base, comp, bc, cc = periods(12, db_calls=2, a=1.6)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p95", mechanisms="sum",
                                       call_counts=(bc, cc))
    assert set(r.contributions) == {"a", DB_EDGE}
    truth = reference({"a": ["a"], "edge": ["db_calls"]}, p95, db_calls=2, a=1.6)
    assert r.contributions["a"] == pytest.approx(truth["a"], rel=0.15, abs=1.0)
    assert r.contributions[DB_EDGE] == pytest.approx(truth["edge"], rel=0.15, abs=1.0)
    assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)


def test_mean_of_a_count_change_is_exact():
    """For the mean the game is additive: the edge's value is the change of the mean database time with the
    per-call time drawn from the baseline, i.e. mean(calls') x mean(per-call) under independence."""
    base, comp, bc, cc = periods(13, db_calls=2)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="mean", mechanisms="sum",
                                       call_counts=(bc, cc), intervals=0)
    per_call0 = (base["db"] / bc["db"]).to_numpy()
    expected = (cc["db"].mean() - bc["db"].mean()) * per_call0.mean()
    assert r.contributions[DB_EDGE] == pytest.approx(expected, rel=0.03)


def test_per_call_slowdown_stays_with_the_callee_when_counts_do_not_change():
    base, comp, bc, cc = periods(14, db_slow=1.8)
    r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p95", mechanisms="sum",
                                       call_counts=(bc, cc))
    assert r.root_causes[0] == "db" and DB_EDGE not in r.contributions


def test_new_call_is_its_edge_against_brute_force():
    base, comp, bc, cc = periods(15, new=True, a=1.4)
    for counts in ((bc, cc), None):  # explicit counts, or inferred: absent throughout the baseline
        r = rca_engine.distribution_change(GRAPH, base, comp, "front", stat="p95", mechanisms="sum",
                                           call_counts=counts)
        assert r.root_causes[0] == NEW_EDGE and r.kinds[NEW_EDGE] == "new"
        assert "new" not in r.contributions  # no per-call time of `new` in the baseline to compare
        truth = reference({"edge": ["new", "new_calls"], "a": ["a"]}, p95, new=True, a=1.4)
        assert r.contributions[NEW_EDGE] == pytest.approx(truth["edge"], rel=0.12)
        assert r.contributions["a"] == pytest.approx(truth["a"], rel=0.2, abs=1.0)
        assert sum(r.contributions.values()) == pytest.approx(r.modelled_change, abs=1e-9)
        d = r.to_dict()
        assert d["edges"]["front→new"] == {"callers": ["front"], "callee": "new"}
        assert d["root_causes"][0] == "front→new"


def test_removed_call_is_a_gone_edge():
    base, comp, bc, cc = periods(16, new=True)
    r = rca_engine.distribution_change(GRAPH, comp, base, "front", stat="mean", mechanisms="sum",
                                       call_counts=(cc, bc), intervals=0)
    assert r.root_causes[0] == NEW_EDGE and r.kinds[NEW_EDGE] == "gone"
    assert r.contributions[NEW_EDGE] == pytest.approx(-comp["new"].mean(), rel=1e-9)


def test_call_counts_are_validated():
    base, comp, bc, cc = periods(17)
    with pytest.raises(rca_engine.RCAError, match="rows"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", mechanisms="sum", call_counts=(bc.iloc[:10], cc))
    bad = cc.copy()
    bad.loc[bad.index[0], "db"] = 0.0
    with pytest.raises(rca_engine.RCAError, match="count no call"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", mechanisms="sum", call_counts=(bc, bad))
    with pytest.raises(rca_engine.RCAError, match="structural"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", mechanisms="linear", call_counts=(bc, cc))
    with pytest.raises(rca_engine.RCAError, match="pair"):
        rca_engine.distribution_change(GRAPH, base, comp, "front", mechanisms="sum", call_counts=bc)  # type: ignore[arg-type]


def test_a_new_call_brings_its_new_subtree_as_one_player():
    """front starts calling `new`, which calls `newdb`: one player, the edge front→new, worth the mean of new's
    whole latency (its own time and its database's); the database's own edge new→newdb is part of it."""
    graph = rca_engine.invert_call_graph([("front", "a"), ("front", "new"), ("new", "newdb")])
    rng = np.random.default_rng(21)

    def period(new: bool) -> pd.DataFrame:
        a, f = rng.gamma(3.0, 4.0, N), rng.gamma(2.0, 2.0, N)
        own_new, own_db = (rng.gamma(2.0, 3.0, N), rng.gamma(2.0, 5.0, N)) if new else (np.zeros(N), np.zeros(N))
        lat_new = own_new + own_db
        return pd.DataFrame({"a": a, "newdb": own_db, "new": lat_new, "front": f + a + lat_new})

    base, comp = period(False), period(True)
    r = rca_engine.distribution_change(graph, base, comp, "front", stat="mean", mechanisms="sum", intervals=0)
    assert list(r.contributions) == [NEW_EDGE]
    assert r.contributions[NEW_EDGE] == pytest.approx(comp["new"].mean(), rel=1e-9)


def test_per_call_slowdown_with_varying_but_unchanged_counts_against_brute_force():
    """db is called once or twice per request in both periods (same mix) and each call got 1.8x slower: the node
    is the player, its calls per request stay the baseline's, and its value matches the brute force."""
    rng = np.random.default_rng(18)
    b, bc = tables(draw(N, rng, db_calls=2))
    c, cc = tables(draw(N, rng, db_calls=2, db_slow=1.8))
    r = rca_engine.distribution_change(GRAPH, b, c, "front", stat="p95", mechanisms="sum", call_counts=(bc, cc))
    assert list(r.contributions) == ["db"] and DB_EDGE in r.p_values and r.p_values[DB_EDGE] > 0.05
    old = draw(1_000_000, np.random.default_rng(7), db_calls=2)
    new = draw(1_000_000, np.random.default_rng(8), db_calls=2, db_slow=1.8)
    truth = brute_force(old, new, {"db": ["db_per_call"]}, p95)
    assert r.contributions["db"] == pytest.approx(truth["db"], rel=0.12)
