"""Regression attribution (rca_engine.distribution_change) vs. DoWhy 0.14 ``gcm.distribution_change``.

1. Scaling: random call graphs of 10 / 25 / 50 services (rca_engine.synthetic), 2,000 rows per period, one
   service's own time doubled in the comparison period; time per query and whether the doubled service comes
   first, next to DoWhy on the same data where it finishes within the time limit.
2. DoWhy's microservice example, scenario "permanent degradation": the 10,000 normal requests vs the 1,000
   degraded ones (../shared/datasets/dowhy_microservice), change of the mean of `Website`, as in DoWhy's
   notebook; the top service and the time of both.

    .venv/bin/python -m benchmarks.regression [--quick] [--dowhy-timeout 600]

DoWhy runs in a child process (killed at the time limit), fitted like its notebook does: its automatic
mechanism assignment, then ``gcm.distribution_change`` with its default mechanism-change test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

import rca_engine
from benchmarks.common import command_line, dataset_path, markdown_table, write_result
from rca_engine.synthetic import random_system

GRAPH_FILE = Path(rca_engine.__file__).parent / "examples" / "microservice_graph.json"
ROWS = 2000
SIZES = (10, 25, 50)
FACTOR = 2.0


def p99_change(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.quantile(y, 0.99) - np.quantile(x, 0.99))


def mean_change(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(y) - np.mean(x))


DOWHY_CONFIGS = {
    "auto": "`gcm.ProbabilisticCausalModel` + `gcm.auto.assign_causal_mechanisms(scm, old)`",
    "notebook": "`gcm.StructuralCausalModel`; non-roots `gcm.AdditiveNoiseModel(gcm.ml.create_linear_regressor())`, "
                "roots `gcm.ScipyDistribution(halfnorm)` (DoWhy's microservice notebook)",
}


def _dowhy_child(edges: list[tuple[str, str]], old: pd.DataFrame, new: pd.DataFrame, target: str, stat: str,
                 config: str, cpu_limit: float, queue: Any) -> None:
    import resource

    from dowhy import gcm
    from scipy.stats import halfnorm

    limit = int(cpu_limit)
    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 5))  # the kernel stops it past its CPU budget
    gcm.config.disable_progress_bars()
    gcm.config.set_default_n_jobs(1)  # in-process on one core (no worker pool competing with the other jobs)
    np.random.seed(0)
    t, c = time.perf_counter(), time.process_time()
    graph = nx.DiGraph(edges)
    if config == "notebook":
        scm: Any = gcm.StructuralCausalModel(graph)
        for node in graph.nodes:
            if graph.in_degree(node):
                scm.set_causal_mechanism(node, gcm.AdditiveNoiseModel(gcm.ml.create_linear_regressor()))
            else:
                scm.set_causal_mechanism(node, gcm.ScipyDistribution(halfnorm))
    else:
        scm = gcm.ProbabilisticCausalModel(graph)
        gcm.auto.assign_causal_mechanisms(scm, old)
    func = p99_change if stat == "p99" else mean_change
    out = gcm.distribution_change(scm, old, new, target, difference_estimation_func=func)
    queue.put((time.process_time() - c, time.perf_counter() - t, {str(k): float(v) for k, v in out.items()}))


STOPPED: dict[str, str] = {}  # why the last DoWhy run gave no result


def run_dowhy(edges: list[tuple[str, str]], old: pd.DataFrame, new: pd.DataFrame, target: str, stat: str,
              cpu_limit: float, *, config: str = "auto", wall_limit: float | None = None, cache: Path | None = None,
              key: str = "") -> tuple[float | None, float | None, dict[str, float] | None]:
    """(CPU seconds, wall seconds, contributions) of DoWhy's distribution_change, or Nones when it was stopped
    (past ``cpu_limit`` CPU seconds, or ``wall_limit`` (default 4x that) in wall time: the machine is shared);
    ``STOPPED["why"]`` says which, with the CPU time it had used. With ``cache`` (a folder) the outcome of a run
    is kept as ``<key>.json`` and reused, so DoWhy's long runs need not be repeated with each run of ours."""
    cached = cache / f"{key}.json" if cache and key else None
    if cached and cached.is_file():
        saved = json.loads(cached.read_text())
        STOPPED["why"] = saved.get("why", "")
        return saved["cpu"], saved["wall"], saved["out"]
    try:
        import dowhy  # noqa: F401
    except ImportError:
        STOPPED["why"] = "DoWhy not installed (pip install -e '.[bench]')"
        return None, None, None
    import resource

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    started = time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = ctx.Process(target=_dowhy_child, args=(edges, old, new, target, stat, config, cpu_limit, queue))
    proc.start()
    wall_limit = 4 * cpu_limit if wall_limit is None else wall_limit
    deadline = started + wall_limit
    result: tuple[float | None, float | None, dict[str, float] | None] = (None, None, None)
    while proc.is_alive() and time.perf_counter() < deadline and queue.empty():
        time.sleep(0.5)
    if not queue.empty():
        result = queue.get()
        proc.join()
        STOPPED["why"] = ""
    else:
        if proc.is_alive():
            proc.kill()
        proc.join()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children, this one included
        cpu = usage.ru_utime + usage.ru_stime - children.ru_utime - children.ru_stime
        wall = time.perf_counter() - started
        STOPPED["why"] = f"did not finish: stopped after {cpu:.0f} s CPU / {wall:.0f} s wall (limits {cpu_limit:.0f} s " \
                         f"CPU, {wall_limit:.0f} s wall)"
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"cpu": result[0], "wall": result[1], "out": result[2], "why": STOPPED["why"],
                                      "config": config, "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    return result


def _cache_note(cache: Path | None) -> str:
    """Where DoWhy's figures come from when they were reused from ``--dowhy-cache``: the time of each run."""
    if cache is None or not cache.is_dir():
        return ""
    runs = []
    for f in sorted(cache.glob("*.json")):
        saved = json.loads(f.read_text())
        runs.append(f"{f.stem} at {saved.get('at', '?')}")
    return (" DoWhy's runs were made earlier by the same command's parts (`--part scaling` / `--part microservice` "
            "with `--dowhy-cache`, niced, while other jobs shared the machine) and reused here: " + ", ".join(runs)
            + "." if runs else "")


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median CPU and wall seconds of ``repeats`` calls, and the last result."""
    cpu, wall, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return float(np.median(cpu)), float(np.median(wall)), out


def scaling(repeats: int, dowhy_sizes: Sequence[int], timeout: float, wall: float | None = None,
            cache: Path | None = None, config: str = "auto") -> tuple[str, list[dict[str, Any]]]:
    rows, figures = [], []
    timed_out = False
    for n in SIZES:
        rng = np.random.default_rng(n)
        system = random_system(n, rng)
        base = system.simulate(ROWS, rng)
        # the faulty service: the one whose doubled own time moves the entry's p99 most (a visible fault)
        candidates = [s for s in system.causal_graph.nodes if s != system.entry]
        effect = {s: np.quantile(system.simulate(ROWS, np.random.default_rng(1), fault=s, factor=FACTOR)[system.entry],
                                 0.99) for s in candidates}
        fault = max(effect, key=effect.__getitem__)
        comp = system.simulate(ROWS, rng, fault=fault, factor=FACTOR)
        mech = dict(system.structure)

        def query(intervals: int, mechanisms: Any = mech, g: nx.DiGraph = system.causal_graph,
                  b: pd.DataFrame = base, c: pd.DataFrame = comp, target: str = system.entry
                  ) -> rca_engine.RegressionResult:
            return rca_engine.distribution_change(g, b, c, target, stat="p99", mechanisms=mechanisms,
                                                  intervals=intervals)

        query(0)  # warm-up (imports, caches)
        t50, w50, r = timed(lambda: query(50), repeats)
        t0, w0, _ = timed(lambda: query(0), repeats)
        tl, _, rl = timed(lambda: query(0, "linear"), 1)
        d_time, d_wall, d_out = (None, None, None)
        tried = n in dowhy_sizes and not timed_out
        if tried:
            d_time, d_wall, d_out = run_dowhy([(str(a), str(b)) for a, b in system.causal_graph.edges], base, comp,
                                              system.entry, "p99", timeout, config=config, wall_limit=wall,
                                              cache=cache, key=f"scaling_{n}_{config}")
            timed_out = d_time is None  # a larger graph takes longer still: not tried
        d_top = max(d_out, key=lambda k: d_out[k]) if d_out else None
        rows.append([n, system.causal_graph.number_of_edges(), fault, f"{r.observed_change:+.2f}",
                     f"{t0 * 1000:.0f} ms ({w0 * 1000:.0f} ms)", f"{t50 * 1000:.0f} ms ({w50 * 1000:.0f} ms)",
                     r.root_causes[0] if r.root_causes else "-",
                     f"{tl * 1000:.0f} ms ({rl.root_causes[0] if rl.root_causes else '-'})",
                     f"{d_time:.1f} s ({d_wall:.1f} s)" if d_time and d_wall else
                     (STOPPED.get("why", "failed") if tried else "not run"),
                     d_top or "-", f"{d_time / t50:.0f}x" if d_time else "-"])
        figures.append({"n": n, "cpu_s": t50, "wall_s": w50, "top_ok": bool(r.root_causes and r.root_causes[0] == fault),
                        "dowhy_s": d_time, "dowhy_top": d_top})
    table = markdown_table(
        ["services", "edges", "doubled", "p99 change", "whyslow CPU (wall), no intervals",
         "whyslow CPU (wall), 50 bootstrap (default)", "whyslow top-1", "whyslow linear (learned), CPU",
         "DoWhy CPU (wall)", "DoWhy top-1", "speed-up (CPU)"], rows)
    return table, figures


def microservice(timeout: float, run_dowhy_too: bool, wall: float | None = None, cache: Path | None = None,
                 configs: Sequence[str] = ("notebook",)) -> tuple[str, dict[str, Any]]:
    d = dataset_path("dowhy_microservice")
    graph = rca_engine.graph_from_edges(json.loads(GRAPH_FILE.read_text())["edges"])
    normal = pd.read_csv(d / "rca_microservice_architecture_latencies.csv")
    degraded = pd.read_csv(d / "rca_microservice_architecture_anomaly_1000.csv")
    old = normal.sample(frac=0.6, random_state=0)  # as DoWhy's notebook does (both libraries get the same rows)
    degraded = degraded.sample(frac=0.6, random_state=0)
    rows, out = [], {}
    for mech in ("auto", "linear"):
        t, _, r = timed(lambda m=mech: rca_engine.distribution_change(graph, old, degraded, "Website", stat="mean",
                                                                      mechanisms=m), 1)
        top = ", ".join(f"{k} {v:+.3f}" for k, v in list(r.contributions.items())[:3])
        rows.append([f"whyslow, mechanisms={mech}, stat=mean", f"{t:.2f} s", r.root_causes[0], top,
                     f"{r.observed_change:+.3f} / {r.modelled_change:+.3f}"])
        out[f"whyslow_{mech}"] = (t, r.root_causes[0])
    t, _, r = timed(lambda: rca_engine.distribution_change(graph, old, degraded, "Website", stat="p99",
                                                           mechanisms="auto"), 1)
    rows.append(["whyslow, mechanisms=auto, stat=p99", f"{t:.2f} s", r.root_causes[0],
                 ", ".join(f"{k} {v:+.3f}" for k, v in list(r.contributions.items())[:3]),
                 f"{r.observed_change:+.3f} / {r.modelled_change:+.3f}"])
    for config in configs if run_dowhy_too else ():
        d_time, d_wall, d_out = run_dowhy([(str(a), str(b)) for a, b in graph.edges], old, degraded, "Website",
                                          "mean", timeout, config=config, wall_limit=wall, cache=cache,
                                          key=f"microservice_{config}")
        label = f"DoWhy gcm.distribution_change ({config} mechanisms, mean)"
        if d_out and d_time is not None:
            ranked = sorted(d_out, key=lambda k: -d_out[k])
            rows.append([label, f"{d_time:.2f} s ({d_wall:.0f} s wall)", ranked[0],
                         ", ".join(f"{k} {d_out[k]:+.3f}" for k in ranked[:3]), f"- / {sum(d_out.values()):+.3f}"])
            out[f"dowhy_{config}"] = (d_time, ranked[0])
        else:
            rows.append([label, STOPPED.get("why", "failed"), "-", "-", "-"])
    table = markdown_table(["method", "CPU time", "top service", "top contributions (s)",
                            "observed / modelled change (s)"], rows)
    return table, out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="DoWhy only on the 10-service graph, one timing repeat")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats of whyslow")
    ap.add_argument("--dowhy-timeout", type=float, default=600.0,
                    help="CPU seconds before a DoWhy run is stopped")
    ap.add_argument("--dowhy-wall", type=float, default=None, help="wall seconds before a DoWhy run is stopped "
                    "(default 4x --dowhy-timeout)")
    ap.add_argument("--dowhy-cache", type=Path, default=None,
                    help="folder keeping each DoWhy run's outcome (reused when present)")
    ap.add_argument("--scaling-config", choices=sorted(DOWHY_CONFIGS), default="auto",
                    help="DoWhy's mechanisms on the synthetic graphs")
    ap.add_argument("--microservice-config", choices=sorted(DOWHY_CONFIGS), nargs="+", default=["notebook"],
                    help="DoWhy's mechanisms on its microservice example, one run each (default: its notebook's)")
    ap.add_argument("--part", choices=("all", "scaling", "microservice"), default="all",
                    help="run one part only (for DoWhy's long runs; the results file is written by 'all')")
    ap.add_argument("--no-dowhy", action="store_true", help="whyslow only")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    dowhy_sizes = () if args.no_dowhy else ((10,) if args.quick else SIZES)
    scale_table, micro_table = "", ""
    figures: list[dict[str, Any]] = []
    micro: dict[str, Any] = {}
    if args.part in ("all", "scaling"):
        scale_table, figures = scaling(repeats, dowhy_sizes, args.dowhy_timeout, args.dowhy_wall, args.dowhy_cache,
                                       args.scaling_config)
    if args.part in ("all", "microservice"):
        try:
            micro_table, micro = microservice(args.dowhy_timeout, not args.no_dowhy, args.dowhy_wall,
                                              args.dowhy_cache, args.microservice_config)
        except FileNotFoundError as exc:
            micro_table, micro = f"Skipped: {exc}", {}
    if args.part != "all":
        print(scale_table or micro_table)
        print(figures or micro)
        return 0
    body = (
        "`rca_engine.distribution_change(graph, baseline, comparison, target, stat=..., mechanisms=...)` with its "
        "defaults (changed nodes by a KS + tail-exceedance test with Benjamini-Hochberg at 5 %, exact Shapley up to "
        "10 changed nodes, common random numbers, 50 bootstrap replicates for intervals, noise floor). "
        "Times are CPU seconds of the process (medians; wall-clock in parentheses): the 2-core machine is shared "
        "with other jobs, so CPU time is the fairer comparison; both libraries run single-threaded.\n\n"
        f"### Scaling: random call graphs, {ROWS:,} rows per period, one service's own time x{FACTOR:g}\n\n"
        "whyslow uses the graphs' structure (sum / max of callees, what the collector infers from spans): a "
        "node's noise is its own time. 'whyslow linear' fits learned linear mechanisms per period instead (no "
        "bootstrap). DoWhy: " + DOWHY_CONFIGS[args.scaling_config] + ", then `gcm.distribution_change(scm, "
        "baseline, comparison, target, difference_estimation_func=p99_change)` (its defaults otherwise: "
        "`mechanism_change_test` by kernel independence tests, exact Shapley), `gcm.config.set_default_n_jobs(1)`, "
        "in a child process stopped at the time limit (after a time-out the larger graphs are not tried)."
        + _cache_note(args.dowhy_cache) + "\n\n"
        + scale_table
        + "\n\n### DoWhy's microservice example, scenario \"permanent degradation\"\n\n"
        "DoWhy's notebook (\"Finding the root cause of elevated latencies in a microservice architecture\", scenario "
        "2): `normal_data.sample(frac=0.6)` (10,000 normal requests) vs `outlier_data.sample(frac=0.6)` (the 1,000 "
        "degraded ones), both with `random_state=0` and the same rows for both libraries; the change of the mean "
        "latency of `Website` (seconds), `difference_estimation_func=lambda x, y: np.mean(y) - np.mean(x)`. "
        "DoWhy configurations: " + "; ".join(f"**{k}**: {v}" for k, v in DOWHY_CONFIGS.items()) + ". The notebook "
        "wraps the call in `gcm.confidence_intervals(..., num_bootstrap_resamples=10)`; the time here is one call "
        "(its bootstrap costs about 10x). The notebook finds `Caching Service` as the main driver.\n\n" + micro_table
    )
    write_result("regression", "Regression attribution (distribution change) vs. DoWhy",
                 command_line("benchmarks.regression", argv), body)
    for f in figures:
        print(f)
    print(micro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
