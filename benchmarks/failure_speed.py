"""Attribution time of one failed trace (rca_engine.failures.attribute_failure, defaults) on random call trees of
6, 11 and 25 nodes (2,000 training rows, 1 % own failures, 90 % propagation), failing along one leaf-to-entry path.

    python -m benchmarks.failure_speed
"""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pandas as pd

from rca_engine.failures import attribute_failure, fit_failures


def main() -> None:
    rng = np.random.default_rng(0)
    print("| nodes | time per failed trace | method | origin ranked first |")
    print("| --- | --- | --- | --- |")
    for n in (6, 11, 25):
        tree = nx.bfs_tree(nx.random_labeled_tree(n, seed=1), 0).reverse()  # callee -> caller, entry n0
        graph = nx.relabel_nodes(tree, {i: f"n{i}" for i in tree.nodes})
        order = list(nx.topological_sort(graph))
        rows = 2000
        failed: dict[str, np.ndarray] = {}
        for v in order:
            x = rng.random(rows) < 0.01
            for u in graph.predecessors(v):
                x |= failed[u] & (rng.random(rows) < 0.9)
            failed[v] = x
        model = fit_failures(graph, pd.DataFrame({k: v.astype(int) for k, v in failed.items()}))
        leaf = next(v for v in order if graph.in_degree(v) == 0)
        path = set(nx.shortest_path(graph, leaf, "n0"))
        sample = {v: int(v in path) for v in order}
        attribute_failure(model, "n0", sample)  # warm-up
        k = 20
        t0 = time.perf_counter()
        for seed in range(k):
            expl = attribute_failure(model, "n0", sample, seed=seed)
        ms = (time.perf_counter() - t0) / k * 1000
        print(f"| {n} | {ms:.1f} ms | {expl.method} | {expl.root_causes[0] == leaf} |")


if __name__ == "__main__":
    main()
