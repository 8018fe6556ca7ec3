"""Accuracy must not regress below the figures the benchmarks recorded (benchmarks/results/accuracy_floor.json).

Each test runs a small, fast subset of a benchmark with the real engine (and, for Train-Ticket, the real
collector over OTLP/gRPC) and compares with the recorded figure minus a margin; the floor is data written by
``make bench``, not a number in this file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from benchmarks.common import FLOOR_FILE, TopK

MARGIN = 0.15  # a subset of a benchmark is noisier than the full run


def floor(section: str, key: str) -> float:
    data = json.loads(FLOOR_FILE.read_text()) if FLOOR_FILE.exists() else {}
    if key not in data.get(section, {}):
        pytest.fail(f"no recorded figure {section}/{key} in {FLOOR_FILE}: run `make bench` to record it")
    return float(data[section][key])


@pytest.mark.slow
def test_petshop_low_traffic_engine_not_below_floor(shared_dataset):
    """The default API with the documented metrics preset (what a user gets; benchmarks.petshop DEFAULT_API:
    fit(graph, normal, preset="metrics"), attribute_window(model, target, window))."""
    from benchmarks.petshop import default_api_method, recall
    from benchmarks.petshop_data import load_scenario

    s = load_scenario(shared_dataset("petshop"), "low_traffic")
    method = default_api_method("metrics", window=True)
    for metric in ("latency", "availability"):
        r = recall(s, method, metric)
        assert r.recall(1) >= floor("petshop_default_api", f"low_traffic/{metric}/top1") - MARGIN, metric
        assert r.recall(3) >= floor("petshop_default_api", f"low_traffic/{metric}/top3") - MARGIN, metric


@pytest.mark.slow
def test_synthetic_two_cause_default_api_not_below_floor():
    """rca_engine.fit(graph, normal) defaults on two-cause outliers with parallel callers (a subset)."""
    import numpy as np

    import rca_engine
    from benchmarks.synthetic_data import make_world, sample
    from benchmarks.synthetic_two_cause import SETTINGS, EngineMethod, two_cause_cases

    s = SETTINGS[0]
    rng = np.random.default_rng(3)
    hits = n = 0
    for _ in range(2):
        w = make_world(s, rng)
        normal, _ = sample(w, s.n_train, rng)
        detector = rca_engine.ITScorer("upper", "fitted").fit(normal[w.target].to_numpy())
        method = EngineMethod()
        for causes, lat in two_cause_cases(w, normal, 5, s.magnitude, rng, detector):
            hits += set(method(w, normal, lat)[:2]) == set(causes)
            n += 1
    assert n >= 6
    key = f"{s.name}/rca_engine defaults: fit(graph, normal); attribute(model, target, row)/top2"
    assert hits / n >= floor("synthetic_two_cause", key) - MARGIN - 1.0 / n


@pytest.mark.slow
def test_synthetic_engine_with_structure_not_below_floor():
    from benchmarks.synthetic import SETTINGS, EngineMethod, run_setting, setting_seed

    for name in ("20 nodes", "20 nodes, all parallel (max)"):
        s = next(x for x in SETTINGS if x.name == name)
        res = run_setting(s, {"engine": EngineMethod("structure")}, n_worlds=2, n_cases=10,
                          seed=setting_seed(s, 7))
        r = res["engine"]
        assert r.n == 20
        assert r.top1 / r.n >= floor("synthetic", f"{name}/whyslow engine, sum/max structure/top1") - MARGIN, name


@pytest.mark.slow
def test_trainticket_pipeline_names_the_injected_service(shared_dataset):
    """Spans -> OTLP/gRPC -> collector -> store -> engine on two faults (basic and route network delays)."""
    from benchmarks.nezha_trainticket import (
        EDGE_CONSISTENCY,
        EDGE_ENDS,
        engine_rankings,
        ingest,
        load_windows,
    )

    w = load_windows(shared_dataset("nezha_trainticket"), only=[2, 13])
    with tempfile.TemporaryDirectory() as tmp:
        run = ingest(w.files, Path(tmp))
        assert run.stats["spans_dropped"] == 0 and run.stats["spans_rejected"] == 0
        er = engine_rankings(run, w, "structure", progress=False)  # the benchmark's default settings
        run.store.close()
    # with only these two windows' pre-injection traces as normal data (~140 traces) the basic-service delay is
    # named first and the route-service delay is in the top 3 (first with all 17 windows' normal data)
    for how in ("node metadata", EDGE_ENDS, EDGE_CONSISTENCY):
        rankings = er.rankings[how]
        res = TopK((1, 3))
        for ranking, f in zip(rankings, w.faults, strict=True):
            res.add(ranking, f.service)
        assert rankings[0][0] == "ts-basic-service", (how, rankings[0][:5])
        assert res.hits[3] == 2, (how, [r[:5] for r in rankings])


@pytest.mark.slow
def test_trainticket_incident_endpoint_at_serves_defaults_not_below_floor(shared_dataset):
    """The whole day replayed through a default WhySlowServer; `service.incident(injection, +3 min)` per fault
    (what GET /api/v1/incident answers) names the injected service first at least as often as `make bench`
    recorded (benchmarks/nezha_serve.py, the exact call of the benchmark)."""
    from benchmarks.nezha_serve import VIEWS, ranking_by, serve_incidents
    from benchmarks.nezha_trainticket import load_windows

    w = load_windows(shared_dataset("nezha_trainticket"))
    run = serve_incidents(w.files, [f.inject_ns for f in w.faults])
    assert run.pipeline["spans_dropped"] == 0 and run.pipeline["spans_rejected"] == 0
    combined, outliers_only = TopK((1, 3)), TopK((1, 3))
    for answer, f in zip(run.answers, w.faults, strict=True):
        combined.add(ranking_by(answer, None), f.service)
        outliers_only.add(ranking_by(answer, "outliers"), f.service)
    label = next(iter(VIEWS))
    assert combined.recall(1) >= floor("nezha_serve_incident", f"{label}/top1") - MARGIN
    assert combined.recall(3) >= floor("nezha_serve_incident", f"{label}/top3") - MARGIN
    # the window comparison adds to what the explained outliers alone name
    assert combined.hits[1] > outliers_only.hits[1], (combined.hits, outliers_only.hits)
