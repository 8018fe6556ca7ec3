"""plugin.detector.ScoreChunk: a stored batch cut into per-entry-point latency matrices with numpy must hold
exactly what the per-trace listener records (AnalysedBatch.row / .errors, as the pipeline builds them) say."""

from __future__ import annotations

import numpy as np
import pytest

from collector_processor.records import ERR, LAT, AnalysedBatch, CompletedTrace
from plugin.detector import ScoreChunk

ENTRIES = ["web:GET /a", "web:GET /b"]
NODES = ["web:GET /a", "web:GET /b", "db:SELECT", "cache:GET", "api:POST /x"]


def _batch(n: int, seed: int) -> AnalysedBatch:
    """``n`` traces of two entry points, each calling a random subset of the other nodes (random latencies,
    some failures), feature rows in the long form the analyser writes."""
    rng = np.random.default_rng(seed)
    entries = [ENTRIES[i] for i in rng.integers(0, 2, n)]
    f_trace, f_node, rows = [], [], []
    for k, entry in enumerate(entries):
        nodes = [NODES.index(entry)] + [i for i in (2, 3, 4) if rng.random() < 0.6]
        for i in nodes:
            v = np.zeros(6)
            v[LAT] = rng.lognormal(2, 1)
            v[ERR] = float(rng.random() < 0.2)
            f_trace.append(k)
            f_node.append(i)
            rows.append(v)
    return AnalysedBatch(
        trace_ids=[f"{k + 1:032x}" for k in range(n)], entries=entries, start=np.arange(n, dtype=np.int64),
        duration_ms=np.ones(n), complete=np.ones(n, dtype=bool), n_spans=np.full(n, 3),
        f_trace=np.array(f_trace), f_node_idx=np.array(f_node), nodes=NODES, values=np.array(rows))


def _records(b: AnalysedBatch) -> list[CompletedTrace]:
    bounds = b.bounds()
    return [CompletedTrace(b.trace_ids[k], b.entries[k], 0, 1.0, True, b.row(k, bounds), 3, b.errors(k, bounds))
            for k in range(len(b))]


def _as_dicts(chunks: list[ScoreChunk]) -> dict[str, tuple[str, dict[str, float], bool]]:
    out = {}
    for c in chunks:
        for i, t in enumerate(c.trace_ids):
            out[t] = (c.entry, {n: float(v) for n, v in zip(c.nodes, c.latency[i], strict=True) if v != 0}, bool(c.failed[i]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_chunks_match_the_per_trace_records(seed: int) -> None:
    b = _batch(60, seed)
    records = _records(b)
    got = _as_dicts(ScoreChunk.from_batch(b))
    want = {r.trace_id: (r.entry, r.row, r.failed) for r in records}
    assert got == want
    assert _as_dicts(ScoreChunk.from_traces(records)) == want
    assert sum(r.failed for r in records) > 0 and sum(not r.failed for r in records) > 0


def test_chunks_are_bounded_and_excluded_traces_left_out() -> None:
    b = _batch(50, 3)
    excluded = set(b.trace_ids[::4])
    chunks = ScoreChunk.from_batch(b, exclude=excluded, max_traces=7)
    assert all(len(c) <= 7 and c.latency.shape == (len(c), len(c.nodes)) for c in chunks)
    assert all(len({c.entry}) == 1 for c in chunks)
    ids = [t for c in chunks for t in c.trace_ids]
    assert sorted(ids) == sorted(set(b.trace_ids) - excluded) and len(ids) == len(set(ids))
    assert ScoreChunk.from_batch(_batch(0, 0)) == []
