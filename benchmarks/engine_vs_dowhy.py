"""rca_engine vs. DoWhy 0.14 ``gcm.attribute_anomalies`` on DoWhy's microservice example (same data, graph,
mechanisms and outlier, in the same run): fit time, time per attributed outlier, and agreement of the
contributions (max |difference|), with DoWhy-vs-DoWhy under two seeds as the reference for its own noise.

    .venv/bin/python -m benchmarks.engine_vs_dowhy [--dowhy-runs 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

import rca_engine
from benchmarks.common import command_line, dataset_path, markdown_table, write_result
from rca_engine.attribution import Attributor

GRAPH_FILE = Path(rca_engine.__file__).parent / "examples" / "microservice_graph.json"
TARGET = "Website"


def load() -> tuple[nx.DiGraph, pd.DataFrame, pd.DataFrame]:
    d = dataset_path("dowhy_microservice")
    graph = rca_engine.graph_from_edges(json.loads(GRAPH_FILE.read_text())["edges"])
    train = pd.read_csv(d / "rca_microservice_architecture_latencies.csv")
    outlier = pd.read_csv(d / "rca_microservice_architecture_anomaly.csv")
    return graph, train, outlier


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU time (s) over ``repeats`` calls and the last result."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(times)), float(np.median(cpu)), out


def dowhy_runs(graph: nx.DiGraph, train: pd.DataFrame, outlier: pd.DataFrame, mechanisms: str,
               seeds: Sequence[int]) -> tuple[float, list[float], list[float], list[dict[str, float]], str]:
    """Fit DoWhy's invertible SCM (linear ANMs or auto assignment) and attribute the outlier once per seed."""
    from dowhy import gcm
    from dowhy.gcm.ml import create_linear_regressor

    gcm.config.disable_progress_bars()
    gcm.config.set_default_n_jobs(1)  # in-process on one core, like the engine (its CPU time is then measurable)
    np.random.seed(seeds[0])
    scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph(graph.edges))
    t = time.perf_counter()
    if mechanisms == "linear":
        for node in scm.graph.nodes:
            if scm.graph.in_degree(node) == 0:
                scm.set_causal_mechanism(node, gcm.EmpiricalDistribution())
            else:
                scm.set_causal_mechanism(node, gcm.AdditiveNoiseModel(create_linear_regressor()))
    else:
        gcm.auto.assign_causal_mechanisms(scm, train)
    gcm.fit(scm, train)
    fit_s = time.perf_counter() - t
    chosen = {}
    for n in scm.graph.nodes:
        mech = scm.causal_mechanism(n)
        model = getattr(mech, "prediction_model", mech)
        chosen[n] = type(getattr(model, "sklearn_model", model)).__name__
    times, cpu, results = [], [], []
    for seed in seeds:
        np.random.seed(seed)
        t, c = time.perf_counter(), time.process_time()
        out = gcm.attribute_anomalies(scm, TARGET, anomaly_samples=outlier)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        results.append({str(k): float(v[0]) for k, v in out.items()})
    return fit_s, times, cpu, results, ", ".join(f"{k}: {v}" for k, v in chosen.items() if "Empirical" not in v)


def graph_pass(model: rca_engine.CausalModel, row: pd.Series, seed: int = 0) -> rca_engine.Explanation:
    """The default attribution with the affine fast path switched off: every coalition propagated node by node."""
    att = Attributor(model, TARGET, seed=seed)
    att.affine = None
    return att.explain(model.values_of(row, att.players)[0])


def max_diff(a: Mapping[Any, float], b: Mapping[Any, float]) -> float:
    return max(abs(a[k] - b[k]) for k in a)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dowhy-runs", type=int, default=2, help="DoWhy attributions per mechanism setting (>= 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats of the engine")
    parser.add_argument("--skip-auto", action="store_true", help="only the linear setting")
    parser.add_argument("--quick", action="store_true", help="only the linear setting, 3 timing repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_auto, args.repeats = True, 3
    try:
        graph, train, outlier = load()
    except FileNotFoundError as exc:
        print(f"engine_vs_dowhy: {exc}; nothing to compare")
        return 2
    row = outlier.iloc[0]
    sections = []
    summary_rows = []
    for mechanisms in (["linear"] if args.skip_auto else ["linear", "auto"]):
        seeds = list(range(max(2, args.dowhy_runs)))
        d_fit, d_times, d_cpu, d_res, d_chosen = dowhy_runs(graph, train, outlier, mechanisms, seeds)
        d_time, d_cpu_time = float(np.median(d_times)), float(np.median(d_cpu))
        dowhy_self = max_diff(d_res[0], d_res[1])
        e_fit, _, model = timed(lambda m=mechanisms: rca_engine.fit(graph, train, m), args.repeats)
        assert isinstance(model, rca_engine.CausalModel)
        rows = []
        affine = Attributor(model, TARGET).affine is not None
        modes: list[tuple[str, dict[str, object]]] = [
            ("dowhy_compatible (same algorithm: counting, 25 Halton permutations)", {"dowhy_compatible": True}),
            ("tail=dowhy, exact Shapley (same set function, no permutation noise)",
             {"tail": "dowhy", "method": "exact"}),
            ("default (counting game scaled to the fitted-tail score; exact Shapley for 11 players)", {}),
            ("fitted tail in every coalition (game=tail)", {"game": "tail"}),
        ]
        if affine:
            modes.insert(3, ("default without the affine fast path (graph pass per coalition, as before)",
                             {"graph_pass": True}))
        for label, kw in modes:
            def run(seed: int, kw: dict[str, object] = kw, m: rca_engine.CausalModel = model) -> rca_engine.Explanation:
                if kw.get("graph_pass"):
                    return graph_pass(m, row, seed)
                return rca_engine.attribute(m, TARGET, row, seed=seed, **kw)

            run(0)  # warm the cached scorer
            e_time, e_cpu, expl = timed(partial(run, 0), args.repeats)
            assert isinstance(expl, rca_engine.Explanation)
            other = run(1)
            diffs = [max_diff({str(k): v for k, v in expl.contributions.items()}, d) for d in d_res]
            path = "graph" if kw.get("graph_pass") or not affine else "affine"
            rows.append([label, path, f"{e_time * 1000:.1f} ms", f"{e_cpu * 1000:.1f} ms", f"{d_time / e_time:.0f}x",
                         f"{d_cpu_time / max(e_cpu, 1e-6):.0f}x", f"{max(diffs):.3f}",
                         f"{max_diff(expl.contributions, other.contributions):.3f}", expl.root_causes[0],
                         f"{expl.outlier_score:.2f}"])
            summary_rows.append((mechanisms, label, e_cpu, d_cpu_time, max(diffs), dowhy_self))
        top_dowhy = [max(r, key=r.__getitem__) for r in d_res]
        sections.append(
            f"### Mechanisms: {mechanisms}\n\n"
            f"DoWhy: fit {d_fit:.2f} s; attribute_anomalies {', '.join(f'{t:.2f}' for t in d_times)} s wall, "
            f"{', '.join(f'{t:.2f}' for t in d_cpu)} s CPU per outlier "
            f"(seeds {seeds}); top-1 {top_dowhy}; DoWhy-vs-DoWhy max |diff| = **{dowhy_self:.3f}** nats; "
            f"outlier score {sum(d_res[0].values()):.2f}. DoWhy's regressors: {d_chosen}.  \n"
            f"rca_engine: fit {e_fit * 1000:.1f} ms (median of {args.repeats}); chosen: "
            f"{', '.join(f'{k}: {v}' for k, v in model.mechanism_names().items() if v != 'empirical')}.\n\n"
            + markdown_table(
                ["engine mode", "target pass", "wall / outlier", "CPU / outlier", "speed-up (wall)", "speed-up (CPU)",
                 "max |diff| vs DoWhy runs",
                 "engine seed 0 vs 1", "top-1", "IT score"], rows)
        )
    body = (
        "Same data (10,000 normal requests, the single outlier of scenario 1), same graph, same mechanisms "
        "(linear: additive noise models with least squares on every non-root node for both; auto: each library's "
        "own automatic assignment) and the same target `Website`, in one run. 'max |diff| vs DoWhy runs' is the "
        "largest difference of any node's contribution to any of DoWhy's runs; compare it with DoWhy-vs-DoWhy "
        "(two seeds), which is DoWhy's own run-to-run noise. The default mode splits the score like DoWhy's counting "
        "game but scales the split to the fitted-tail score (which does not saturate at log(2M+1)); game=tail uses "
        "the fitted tail in every coalition and legitimately differs from DoWhy where coalitions reach beyond the "
        "sampled range. The 2-core machine is shared with other developers' jobs, so wall times of "
        "both libraries are inflated and noisy; CPU time of the process (both run single-threaded here) is the "
        "fairer ratio (DoWhy's joblib parallelism is set to 1 job so that its work runs in-process and is counted). "
        "'target pass': affine = every mechanism is affine (linear / sum / empirical roots), so each coalition's "
        "target values come from path coefficients (rca_engine.affine) without a pass through the graph; graph = "
        "the general node-by-node propagation (used whenever a mechanism is not affine, e.g. gradient boosting; "
        "shown for the linear models too, same seed, as the before/after of the fast path).\n\n" + "\n\n".join(sections)
    )
    write_result("engine_vs_dowhy", "rca_engine vs. DoWhy 0.14 on the microservice example",
                 command_line("benchmarks.engine_vs_dowhy", argv), body)
    for m, label, e_time, d_time, diff, ref in summary_rows:
        print(f"{m:6s} {label[:40]:40s} {e_time * 1000:8.1f} ms  {d_time / e_time:6.0f}x  diff {diff:.3f} (dowhy self {ref:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
