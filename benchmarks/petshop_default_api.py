"""PetShop through the engine's default API: what a library user gets, next to the strongest baselines.

Calls, per issue: ``model = rca_engine.fit(graph, normal, preset=...)`` (once per target and normal period), then
``rca_engine.attribute_window(model, target, window)`` on the issue's 5-row window (its outlier rows explained,
contributions summed), or, one row at a time, ``rca_engine.outlier_scores(model, window)`` to find the window's most
unusual row of the target and ``rca_engine.attribute(model, target, row)``; every node ranked by contribution (the
paper's recall protocol). The ``metrics`` preset and the window API were devised on low traffic; high traffic is
the held-out part (see the analysis for how clean that is). Data preparation as in
``benchmarks.petshop`` (``prepare``: nodes with too few measurements marginalised out, NaNs imputed; availability as
failed-request counts). The full comparison with every baseline and ablation is ``benchmarks.petshop``.

    .venv/bin/python -m benchmarks.petshop_default_api [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from benchmarks.common import TopK, command_line, dataset_path, markdown_table, update_floor, write_result
from benchmarks.petshop import (
    DEFAULT_ANALYSIS,
    ENGINE_ERRORS,
    Method,
    default_api_method,
    recall,
    traversal_method,
)
from benchmarks.petshop_baselines import ranked_correlation
from benchmarks.petshop_data import load_scenario

STRATA = ("low_traffic", "high_traffic")
METRICS = ("latency", "availability")
DEFAULT_API = "rca_engine: fit(graph, normal, preset='metrics'); attribute_window(model, target, window)"
ONE_ROW = "rca_engine, one row: fit(graph, normal, preset='metrics'); outlier_scores -> most unusual row; attribute"
EVERY_ROW = "rca_engine: same, attribute_window(..., threshold=0): every row of the window summed"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="low traffic only")
    args = ap.parse_args(argv)
    root = dataset_path("petshop")
    strata = STRATA[:1] if args.quick else STRATA
    methods: dict[str, Method] = {
        DEFAULT_API: default_api_method("metrics", window=True),
        ONE_ROW: default_api_method("metrics"),
        EVERY_ROW: default_api_method("metrics", window=True, threshold=0.0),
        "rca_engine, no preset: fit(graph, normal); attribute_window(model, target, window)": default_api_method(
            None, window=True),
        "traversal (the benchmark's baseline, re-implemented)": Method(
            lambda g, t, m, n, a: traversal_method(n, a, g, t, search=True)),
        "ranked correlation (re-implemented)": ranked_correlation(),
    }
    results: dict[str, dict[tuple[str, str], TopK]] = {m: {} for m in methods}
    seconds: dict[tuple[str, str, str], float] = {}
    cpu: dict[tuple[str, str, str], float] = {}
    for name in strata:
        scenario = load_scenario(root, name)
        for mname, method in methods.items():
            for metric in METRICS:
                t, c = time.perf_counter(), time.process_time()
                results[mname][(name, metric)] = recall(scenario, method, metric)
                seconds[(mname, name, metric)] = time.perf_counter() - t
                cpu[(mname, name, metric)] = time.process_time() - c
    cells = [(s, m) for s in strata for m in METRICS]
    header = ["method"] + [f"{s.replace('_traffic', '')} {m[:4]} top1 / top3" for s, m in cells]
    rows = [[m] + [f"{results[m][c].cell(1)} / {results[m][c].cell(3)}" for c in cells] for m in methods]
    timing = ", ".join(f"{s} {m}: {cpu[(DEFAULT_API, s, m)]:.1f} s CPU ({seconds[(DEFAULT_API, s, m)]:.1f} s wall)"
                       for s, m in cells)
    body = "\n".join([
        "Top-k recall per stratum (issues per cell: "
        + ", ".join(f"{s} {m}: {results[DEFAULT_API][(s, m)].n}" for s, m in cells) + ").",
        "",
        markdown_table(header, rows),
        "",
        f"Time of the default-API row per stratum and metric (fits included; shared 2-core machine): {timing}.",
        "",
        DEFAULT_ANALYSIS,
    ] + ([f"\nEngine errors ({len(ENGINE_ERRORS)}), first: {ENGINE_ERRORS[0]}"] if ENGINE_ERRORS else []))
    write_result("petshop_default_api", "PetShop through the default API (detect, then explain)",
                 command_line("benchmarks.petshop_default_api", argv), body)
    if not args.quick:
        update_floor("petshop_default_api", {f"{s}/{m}/top{k}": results[DEFAULT_API][(s, m)].recall(k)
                                              for s, m in cells for k in (1, 3)})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
