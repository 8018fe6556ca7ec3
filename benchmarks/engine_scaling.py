"""How rca_engine's fit and attribution times grow with nodes and training rows (one core).

Random call DAGs from :mod:`rca_engine.synthetic` (latency = own time + sum/max of callees); one injected fault
per attributed outlier. Targets: one outlier on a 25-node graph with 2,000 rows in < 100 ms; fitting 25 nodes x
10,000 rows in < 1 s with sum/max/linear mechanisms.

    .venv/bin/python -m benchmarks.engine_scaling [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

import rca_engine
from benchmarks.common import command_line, markdown_table, write_result
from rca_engine.synthetic import random_system


def _median_time(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def fit_table(node_counts: Sequence[int], row_counts: Sequence[int], repeats: int) -> str:
    rows = []
    for n in node_counts:
        rng = np.random.default_rng(n)
        system = random_system(n, rng)
        for r in row_counts:
            train = system.simulate(r, rng)
            cells = [str(n), f"{r:,}"]
            for spec in ("structure", "linear", "auto"):
                if spec == "auto" and (n > 25 or r > 10000):
                    cells.append("-")
                    continue
                mech = system.structure if spec == "structure" else spec
                t, _ = _median_time(lambda mech=mech, train=train, g=system.causal_graph: rca_engine.fit(g, train, mech),
                                    1 if spec == "auto" else repeats)
                cells.append(f"{t * 1000:.0f} ms")
            rows.append(cells)
    return markdown_table(["nodes", "rows", "fit sum/max", "fit linear", "fit auto"], rows)


def attribution_table(node_counts: Sequence[int], rows_train: int, cases: int,
                      p_parallel: float = 0.3) -> tuple[str, dict[int, float]]:
    rows, per_node = [], {}
    for n in node_counts:
        rng = np.random.default_rng(100 + n)
        system = random_system(n, rng, p_parallel=p_parallel)  # same graphs for every p_parallel
        train = system.simulate(rows_train, rng)
        model = rca_engine.fit(system.causal_graph, train, system.structure)
        model.scorer(system.entry)  # the per-node scorer is fitted once and cached (part of serving, not of a query)
        times, cpu, hits, perms, methods = [], [], 0, [], set()
        outliers, outlier_hits = 0, 0
        for case in range(cases):
            fault = str(rng.choice(list(system.causal_graph)))
            out = system.simulate(1, rng, fault=fault, add=6 * float(np.exp(system.mu[fault])))
            t, c = time.perf_counter(), time.process_time()
            expl = rca_engine.attribute(model, system.entry, out.iloc[0], seed=case)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            hits += expl.root_causes[0] == fault
            if expl.outlier_score >= 3.0:  # the entry latency is rarer than 1 in 20: a real outlier to explain
                outliers += 1
                outlier_hits += expl.root_causes[0] == fault
            perms.append(expl.num_permutations)
            methods.add(expl.method)
        per_node[n] = float(np.median(times))
        rows.append([str(n), f"{np.median(times) * 1000:.1f} ms", f"{np.median(cpu) * 1000:.1f} ms",
                     f"{np.max(times) * 1000:.1f} ms",
                     "/".join(sorted(methods)), f"{np.mean(perms):.0f}", f"{hits}/{cases}",
                     f"{outlier_hits}/{outliers}"])
    table = markdown_table(["nodes (all upstream of the target)", "median wall time / outlier",
                            "median CPU time / outlier", "max wall", "Shapley method",
                            "mean permutations", "top-1 correct", "top-1 among outliers (score >= 3)"], rows)
    return table, per_node


def knob_table() -> str:
    rng = np.random.default_rng(3)
    system = random_system(25, rng)
    model = rca_engine.fit(system.causal_graph, system.simulate(2000, rng), system.structure)
    model.scorer(system.entry)
    out = system.simulate(1, rng, fault="s5", add=6 * float(np.exp(system.mu["s5"]))).iloc[0]
    ref = rca_engine.attribute(model, system.entry, out, method="permutation", num_samples=3000,
                               max_permutations=1024, tolerance=0.0, seed=99)
    rows = []
    for perms, samples in ((256, 1000), (128, 1000), (64, 1000), (64, 500)):
        cpu, errs = [], []
        for seed in range(3):
            c = time.process_time()
            expl = rca_engine.attribute(model, system.entry, out, max_permutations=perms, num_samples=samples, seed=seed)
            cpu.append(time.process_time() - c)
            errs.append(max(abs(expl.contributions[v] - ref.contributions[v]) for v in ref.contributions)
                        / ref.outlier_score)
        default = " (default)" if (perms, samples) == (256, 1000) else ""
        rows.append([f"max_permutations={perms}, num_samples={samples}{default}", f"{np.median(cpu) * 1000:.0f} ms",
                     f"{np.mean(errs):.3f}", expl.root_causes[0]])
    return markdown_table(["setting", "CPU time / outlier", "mean relative max error", "top-1 (truth s5)"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and cases")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with threadpool_limits(1):
        fit_nodes = [10, 25] if args.quick else [10, 25, 50]
        fit_rows = [2000, 10000] if args.quick else [2000, 10000, 50000]
        fit_md = fit_table(fit_nodes, fit_rows, repeats=3)
        att_nodes = [5, 10, 25] if args.quick else [5, 10, 15, 25, 40]
        att_md, per_node = attribution_table(att_nodes, 2000, cases=5 if args.quick else 10)
        sum_md, _ = attribution_table(att_nodes, 2000, cases=5 if args.quick else 10, p_parallel=0.0)
        knobs_md = knob_table()
        rng = np.random.default_rng(3)
        system = random_system(25, rng)
        rows_md = []
        for r in ([2000, 10000] if args.quick else [500, 2000, 10000, 50000]):
            model = rca_engine.fit(system.causal_graph, system.simulate(r, rng), system.structure)
            model.scorer(system.entry)
            out = system.simulate(1, rng, fault="s5", add=6 * float(np.exp(system.mu["s5"])))
            t, _ = _median_time(lambda m=model, o=out: rca_engine.attribute(m, system.entry, o.iloc[0]), 3)
            rows_md.append([f"{r:,}", f"{t * 1000:.1f} ms"])
    body = (
        "All timings on one core (BLAS/OpenMP limited to 1 thread), median of repeats. The machine is shared with "
        f"other developers' jobs (load average {load:.1f} on 2 cores when this started), so wall times are inflated; the CPU "
        "time of the (single-threaded) process is given where it matters.\n\n"
        "### Fitting (sum/max = the latency-structure mechanisms of each node; auto = linear vs. gradient boosting "
        "by held-out error)\n\n" + fit_md + "\n\n"
        "### Attributing one outlier (2,000 training rows, structure mechanisms, default settings: fitted tail; exact "
        "Shapley with 3,000 Monte-Carlo samples up to 11 players, antithetic permutation sampling with 1,000 samples and "
        "at most 256 permutations above). The injected fault adds 6x the node's typical own time; when that is small "
        "against the entry's spread the entry is not an outlier at all, hence the last column.\n\n" + att_md
        + "\n\n### The same graphs and outliers with sequential calls only (every caller a sum, so every mechanism is "
        "affine and the target values of all coalitions come from path coefficients: rca_engine.affine; above, graphs "
        "with a parallel caller (max of several callees) take the node-by-node graph pass)\n\n" + sum_md
        + "\n\n### Speed/accuracy knobs on a 25-node graph (2,000 rows; error = max |contribution - reference| "
        "relative to the outlier score, reference = 1,024 permutations x 3,000 samples)\n\n" + knobs_md
        + "\n\n### Attribution time vs. training rows (25 nodes)\n\n" + markdown_table(["rows", "time / outlier"], rows_md)
        + "\n\nAttribution time does not depend on the number of training rows (the Monte-Carlo sample size is "
        "fixed); it grows with the number of coalitions evaluated (2^n exact, permutations x (n-1) sampled) times "
        "the Monte-Carlo size."
    )
    write_result("engine_scaling", "rca_engine scaling: fit and attribution time vs. nodes and rows",
                 command_line("benchmarks.engine_scaling", argv), body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
