"""Hand-built analysed batches of one entry point calling a database (explicit latencies, so every value is
known) for tests of the backend on real stores."""

from __future__ import annotations

import numpy as np

from collector_processor.records import COUNT, LAT, OWN, AnalysedBatch, CompletedTrace

ENTRY, DB = "shop:GET /cart", "db:SELECT"
T0 = 1_700_000_000_000_000_000


def trace_id(i: int) -> str:
    return f"{i:032x}"


def entry_db_batch(ids: list[int], db_ms: np.ndarray, own_ms: np.ndarray, complete: bool = True) -> AnalysedBatch:
    """Traces ``ids`` of ENTRY calling DB once: entry latency = db time + the entry's own time."""
    n = len(ids)
    values = np.zeros((2 * n, 6))
    values[0::2, LAT], values[0::2, OWN] = db_ms + own_ms, own_ms
    values[1::2, LAT], values[1::2, OWN] = db_ms, db_ms
    values[:, COUNT] = 1
    return AnalysedBatch(
        trace_ids=[trace_id(i) for i in ids], entries=[ENTRY] * n,
        start=np.array([T0 + i * 1_000_000 for i in ids], dtype=np.int64), duration_ms=db_ms + own_ms,
        complete=np.full(n, complete), n_spans=np.full(n, 2), f_trace=np.repeat(np.arange(n), 2),
        f_node_idx=np.tile([0, 1], n), nodes=[ENTRY, DB], values=values,
        node_info={ENTRY: ("shop", "GET /cart", "span"), DB: ("db", "SELECT", "db")},
        graph_nodes={(ENTRY, ENTRY): [n, 0, n], (ENTRY, DB): [n, 0, 0]}, graph_edges={(ENTRY, ENTRY, DB): n},
    )


def normal_batch(n: int, seed: int = 0, first_id: int = 0) -> AnalysedBatch:
    """``n`` normal traces: database ~20 ms, own time ~5 ms (log-normal, 20 % spread)."""
    rng = np.random.default_rng(seed)
    return entry_db_batch(list(range(first_id, first_id + n)), rng.lognormal(np.log(20), 0.2, n),
                          rng.lognormal(np.log(5), 0.2, n))


def completed(i: int, db_ms: float, own_ms: float) -> CompletedTrace:
    """The listener's view of trace ``i`` of :func:`entry_db_batch`."""
    return CompletedTrace(trace_id(i), ENTRY, T0 + i * 1_000_000, db_ms + own_ms, True,
                          {ENTRY: db_ms + own_ms, DB: db_ms}, 2)
