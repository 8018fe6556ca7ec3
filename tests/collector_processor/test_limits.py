"""Cardinality bounds against hostile senders: distinct entry points and span types are capped; new ones
beyond a cap are counted and folded into an ``{other}`` bucket instead of minting graphs, models and series."""

from __future__ import annotations

from tests.support.otlp_build import SERVER, request
from tests.support.pipeline import complete_all


def _root(trace: int, service: str, name: str) -> dict:
    return {"service": service, "trace": trace, "span": 1, "name": name, "kind": SERVER, "start_ms": 0,
            "end_ms": 10}


def test_entry_points_beyond_the_limit_share_other(make_pipeline, store):
    p = make_pipeline(max_entry_points=3)
    p.accept(request([_root(t, "web", f"GET /page{chr(96 + t)}") for t in range(1, 11)]))
    complete_all(p)
    entries = set(store.entry_points())
    assert len(entries) == 4 and "{other}:{other}" in entries
    assert {"web:GET /pagea", "web:GET /pageb", "web:GET /pagec"} <= entries
    st = p.stats()
    assert st["entry_points"] == 4 and st["entry_points_overflow"] == 7
    assert store.counts()["traces"] == 10  # folded, never dropped
    p.accept(request([_root(20, "web", "GET /pagea")]))  # a known entry point still gets its own
    complete_all(p)
    assert store.trace_features(f"{20:032x}").entry == "web:GET /pagea"


def test_new_services_beyond_the_type_limit_share_one_bucket(make_pipeline, store):
    p = make_pipeline(max_span_types=5, max_entry_points=1000)
    p.accept(request([_root(t, f"svc{chr(97 + t)}", "GET /x") for t in range(1, 13)]))
    complete_all(p)
    st = p.stats()
    assert st["span_types"] <= 6 and st["span_types_overflow"] == 7
    assert "{other}:{other}" in store.entry_points() and store.counts()["traces"] == 12


def test_future_dated_spans_are_rejected_with_a_reason(make_pipeline, store):
    import time

    from collector_processor.otlp_decode import FUTURE_REASON
    from tests.support.otlp_build import MS, T0

    p = make_pipeline(max_future_s=600)
    ahead_ms = (time.time_ns() - T0) / MS + 2 * 3600 * 1000  # two hours ahead of now
    spans = [{"service": "web", "trace": 1, "span": 1, "name": "GET /now", "kind": SERVER, "start_ms": 0,
              "end_ms": 10},
             {"service": "web", "trace": 2, "span": 1, "name": "GET /later", "kind": SERVER,
              "start_ms": ahead_ms, "end_ms": ahead_ms + 10},
             {"service": "web", "trace": 3, "span": 1, "name": "GET /soon", "kind": SERVER,  # 1 min skew: kept
              "start_ms": ahead_ms - 7140 * 1000, "end_ms": ahead_ms - 7140 * 1000 + 10}]
    batch = p.accept(request(spans))
    assert batch.rejected == 1 and batch.reasons[FUTURE_REASON] == 1
    assert "in the future" in batch.error_message()
    st = p.stats()
    assert st["spans_future"] == 1 and st["spans_rejected"] == 1 and st["spans_accepted"] == 2
    complete_all(p)
    assert set(store.entry_points()) == {"web:GET /now", "web:GET /soon"}
