"""Wrapper-span repair on a pathological fan-out: thousands of overlapping same-service siblings stay bounded."""

from __future__ import annotations

import time

import numpy as np

from collector_processor.call_graph import wrapper_adoptions
from collector_processor.otlp_decode import KIND_INTERNAL


def test_overlapping_fanout_is_not_a_wrapper_and_stays_fast() -> None:
    n = 5001  # span 0 is the parent; 5,000 parallel INTERNAL leaves of one service all overlap each other
    par = np.zeros(n, dtype=np.int64)
    child = np.ones(n, dtype=bool)
    child[0] = False
    kind = np.full(n, KIND_INTERNAL, dtype=np.int64)
    svc = np.zeros(n, dtype=np.int64)
    start = np.r_[0, np.arange(1, n) * 10].astype(np.int64)  # each leaf starts 10 ns after the previous
    end = np.r_[10**9, np.arange(1, n) * 10 + 10**6].astype(np.int64)  # and lasts 1 ms: ~5,000 overlaps each
    t0 = time.perf_counter()
    adopted, wrapper = wrapper_adoptions(par, child, kind, svc, start, end, 0.05)
    assert time.perf_counter() - t0 < 5.0
    # every candidate wrapper overlaps thousands of siblings: a fan-out, nothing adopted (25 M pairs avoided)
    assert len(adopted) == 0 and len(wrapper) == 0


def test_a_real_wrapper_next_to_a_small_fanout_is_still_repaired() -> None:
    # parent 0; wrapper 1 (INTERNAL leaf, 0-100); call 2 inside it (10-90); 3 unrelated siblings outside (200-300)
    par = np.zeros(6, dtype=np.int64)
    child = np.array([False, True, True, True, True, True])
    kind = np.full(6, KIND_INTERNAL, dtype=np.int64)
    svc = np.zeros(6, dtype=np.int64)
    start = np.array([0, 0, 10, 200, 200, 200], dtype=np.int64)
    end = np.array([400, 100, 90, 300, 300, 300], dtype=np.int64)
    adopted, wrapper = wrapper_adoptions(par, child, kind, svc, start, end, 0.05)
    pairs = set(zip(adopted.tolist(), wrapper.tolist(), strict=True))
    assert (2, 1) in pairs
