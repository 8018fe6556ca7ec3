"""Two periods of a small call graph with known own-time changes (engine and CLI regression tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import rca_engine

GRAPH = rca_engine.invert_call_graph([("front", "a"), ("front", "b"), ("b", "db"), ("front", "new")])
SUM = "sum"
N = 2000


def own_times(n: int, rng: np.random.Generator, *, a: float = 1.0, db: float = 1.0, partial: float = 0.0,
              new: bool = False, db_calls: int = 1) -> dict[str, np.ndarray]:
    """Independent own times per node (ms); ``a``/``db`` scale a service, ``partial`` triples a's own time on
    that share of requests, ``new`` adds a call, ``db_calls`` repeats the database call."""
    own_a = rng.gamma(3.0, 4.0, n) * a
    if partial:
        hit = rng.random(n) < partial
        own_a = np.where(hit, own_a * 3.0, own_a)
    db_total = sum(rng.gamma(2.0, 5.0, n) * db for _ in range(db_calls))
    return {"a": own_a, "db": db_total, "b": rng.gamma(2.0, 3.0, n), "front": rng.gamma(2.0, 2.0, n),
            "new": rng.gamma(2.0, 10.0, n) if new else np.zeros(n)}


def table(own: dict[str, np.ndarray]) -> pd.DataFrame:
    """Node latencies from own times: a caller's latency is its own time plus its callees' latencies."""
    b = own["b"] + own["db"]
    return pd.DataFrame({"a": own["a"], "db": own["db"], "b": b, "new": own["new"],
                         "front": own["front"] + own["a"] + b + own["new"]})


def periods(seed: int, **change: object) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    rng = np.random.default_rng(seed)
    own0, own1 = own_times(N, rng), own_times(N, rng, **change)  # type: ignore[arg-type]
    return table(own0), table(own1), own0, own1
