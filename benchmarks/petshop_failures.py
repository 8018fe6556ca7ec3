"""PetShop availability issues through the engine's failure path (rca_engine.failures), next to the latency-style
engine (benchmarks.petshop's best configuration) under the same protocol.

PetShop gives per-interval availability per node, not per-request outcomes, so each interval becomes one binary
observation per node: "some request failed" (unavailability > 0). The noisy-OR failure model is fitted on the
normal period, the abnormal window's row 2 is attributed when its target failed (else: no root cause), and the
issue is found when the ground-truth node is among the k nodes with the largest positive contributions.

    python -m benchmarks.petshop_failures
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import networkx as nx
import pandas as pd

from benchmarks.common import TopK, dataset_path
from benchmarks.petshop import (
    BEST_CONFIG,
    ROW,
    EngineConfig,
    Method,
    engine_method,
    percent_view,
    prepare,
    recall,
)
from benchmarks.petshop_data import SCENARIOS, load_scenario


def failure_method(cfg: EngineConfig = EngineConfig(threshold=0.0)) -> Method:
    """The failure engine under the paper's protocol (the same node selection and imputation as the engine)."""
    from rca_engine import RCAError
    from rca_engine.failures import attribute_failure, fit_failures

    def run(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        if metric != "availability" or len(abnormal) <= ROW:
            return []
        g, norm, ab = prepare(graph, target, normal, abnormal, cfg)
        try:
            model = fit_failures(g, (norm > 0).astype(int))
            expl = attribute_failure(model, target, (ab.iloc[[ROW]] > 0).astype(int))
        except RCAError:
            return []
        return [n for n in expl.root_causes if expl.contributions[n] > 0]

    return Method(run, percent_view)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    root = dataset_path("petshop")
    methods = {"failure engine (noisy-OR, interval failed = unavailability > 0)": failure_method(),
               "engine, best configuration (benchmarks.petshop)": engine_method(BEST_CONFIG)}
    print("| method | " + " | ".join(f"{s} avail top1 / top3 (n)" for s in SCENARIOS) + " |")
    print("| --- |" + " --- |" * len(SCENARIOS))
    for name, method in methods.items():
        cells = []
        for s in SCENARIOS:
            scenario = load_scenario(root, s)
            if scenario.normal is None:
                cells.append("not run (no normal data)")
                continue
            r: TopK = recall(scenario, method, "availability")
            cells.append(f"{r.cell(1)} / {r.cell(3)} ({r.n})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
