"""Error-rate change attribution (rca_engine.error_rate_change): time per query and accuracy on random call graphs.

Random call trees of 10 / 25 / 50 services (callee -> caller; every node fails on its own on 0.5 % of the
requests, callers pass 90 % of their callees' failures on) and the same trees with shared callees added (a DAG:
the coalition values are simulated with common random numbers instead of the closed form). In the comparison
period one random non-entry node's own failure rate goes to 5 %. Per size and graph kind, over several seeds:
time per query at the defaults (50 bootstrap replicates) and without intervals, how often the changed node comes
first, the modelled vs the observed change, and, on a second period without any change, how often a change is
reported (significant: a player and |observed change| above the noise floor).

    .venv/bin/python -m benchmarks.error_rate [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import networkx as nx
import numpy as np
import pandas as pd

import rca_engine
from benchmarks.common import command_line, markdown_table, write_result

SIZES = (10, 25, 50)
ROWS = 2000
OWN, RAISED, PROPAGATION = 0.005, 0.05, 0.9


def call_graph(n: int, seed: int, shared: bool) -> nx.DiGraph:
    """A random call tree rooted at ``s0`` as a causal graph (callee -> caller); ``shared`` adds a second caller to
    about a fifth of the non-root nodes (an earlier node in a topological order of the tree: still acyclic)."""
    tree = nx.bfs_tree(nx.random_labeled_tree(n, seed=seed), 0).reverse()
    g = nx.relabel_nodes(tree, {i: f"s{i}" for i in tree.nodes})
    if shared:
        rng = np.random.default_rng(seed)
        order = list(nx.topological_sort(g))  # callees first, s0 (the entry) last
        for i, v in enumerate(order[:-1]):
            if rng.random() < 0.2:
                later = [w for w in order[i + 1:] if not g.has_edge(v, w)]
                if later:
                    g.add_edge(v, later[int(rng.integers(len(later)))])
    return g


def simulate(g: nx.DiGraph, own: dict[str, float], rows: int, rng: np.random.Generator) -> pd.DataFrame:
    return rca_engine.failure_model(g, own, default_propagation=PROPAGATION).sample(rows, rng)


def run(seeds: int) -> list[list[object]]:
    out: list[list[object]] = []
    for shared in (False, True):
        for n in SIZES:
            cpu, cpu0, wall, top1, false_alarms, gaps, floors, changes = [], [], [], 0, 0, [], [], []
            simulated = 0
            for seed in range(seeds):
                g = call_graph(n, seed, shared)
                rng = np.random.default_rng([n, seed, int(shared)])
                changed = f"s{int(rng.integers(1, n))}"
                base = simulate(g, dict.fromkeys(g, OWN), ROWS, rng)
                comp = simulate(g, {**dict.fromkeys(g, OWN), changed: RAISED}, ROWS, rng)
                t, c = time.perf_counter(), time.process_time()
                r = rca_engine.error_rate_change(g, base, comp, "s0", seed=seed)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - t)
                c = time.process_time()
                rca_engine.error_rate_change(g, base, comp, "s0", seed=seed, intervals=0)
                cpu0.append(time.process_time() - c)
                top1 += bool(r.root_causes) and r.root_causes[0] == changed
                gaps.append(abs(r.unexplained))
                changes.append(r.observed_change)
                floors.append(r.noise_floor)
                simulated += r.computation == "simulated"
                null = rca_engine.error_rate_change(g, base, simulate(g, dict.fromkeys(g, OWN), ROWS, rng), "s0",
                                                    seed=seed, intervals=0)
                false_alarms += null.significant
            out.append([
                "DAG (shared callees)" if shared else "tree", n,
                f"{seeds - simulated} closed form, {simulated} simulated",
                f"{1000 * float(np.median(cpu0)):.0f} ms",
                f"{1000 * float(np.median(cpu)):.0f} ms ({1000 * float(np.median(wall)):.0f} ms)",
                f"{top1}/{seeds}", f"{float(np.median(changes)):+.2f} pp", f"{float(np.median(gaps)):.2f} pp",
                f"{float(np.median(floors)):.2f} pp",
                f"{false_alarms}/{seeds}",
            ])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds per row instead of 10")
    args = ap.parse_args(argv)
    rows = run(3 if args.quick else 10)
    header = ["graph", "services", "coalition values", "CPU, no intervals", "CPU (wall), 50 bootstrap (default)",
              "changed node first", "observed change (median)", "|unexplained| (median)", "noise floor (median)",
              "no-change periods reported as a change"]
    body = (
        "`rca_engine.error_rate_change(graph, baseline, comparison, \"s0\")` at its defaults (per-node Fisher tests "
        "of the own-failure rate and of each callee's propagation, Benjamini-Hochberg at 5 %, exact Shapley, 50 "
        f"bootstrap replicates, noise floor). {ROWS:,} requests per period; every node fails on its own on "
        f"{OWN:.1%} of the requests and passes {PROPAGATION:.0%} of its callees' failures on; in the comparison "
        f"period one random non-entry node fails on its own on {RAISED:.0%}. Trees get the closed form (exact), "
        "DAGs (about a fifth of the nodes with a second caller) are simulated with 100,000 requests of common "
        "random numbers (a DAG whose random extra edges all missed is a tree). The unexplained rest is resampling "
        "noise of the nodes that did not change, of the size of the noise floor. Medians over the seeds; CPU seconds "
        "of the process (wall-clock in parentheses; the machine is shared).\n\n" + markdown_table(header, rows))
    path = write_result("error_rate", "Error-rate change attribution", command_line("benchmarks.error_rate", argv),
                        body)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
