"""A db -> api incident whose normal rows hide the db's effect (used by the engine and CLI tests)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

GRAPH = nx.DiGraph([("db", "api"), ("cache", "api")])


def normal_and_incident(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The db's true latency hardly moves in normal operation; what is measured of it (an average over calls
    from other clients too) moves more, and that part does not reach the api, so the normal rows say the api
    barely depends on the db. During the incident the db is 2 ms slower and the api with it, 1:1."""
    rng = np.random.default_rng(seed)

    def rows(n: int, shift: float) -> pd.DataFrame:
        true_db = rng.normal(10.0 + shift, 0.05, n)
        cache = rng.normal(3.0, 0.5, n)
        api = true_db + 0.5 * cache + rng.normal(5.0, 0.3, n)
        return pd.DataFrame({"db": true_db + rng.normal(0.0, 0.1, n), "cache": cache, "api": api})

    return rows(600, 0.0), rows(5, 2.0)
