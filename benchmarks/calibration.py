"""Calibration of the IT outlier score on normal data: how often a normal request scores above a threshold.

An IT score of t nats means "rarer than e^-t"; on normal traffic a fraction e^-t of the requests should score at
least t. Random call graphs (``rca_engine.synthetic.random_system``, lognormal own times, sum/max structure) are
fitted on n normal traces and score 200,000 fresh normal requests at the entry point, one-sided (``upper``, as
``whyslow serve`` scores), with purely empirical noise (``tail_fraction=0``, DoWhy's model) and with exponential
tails beyond the 90th percentile (``tail_fraction=0.1``, what ``whyslow serve`` fits).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from benchmarks.common import command_line, markdown_table, write_result

LEVELS = (1e-2, 1e-3, 1e-4)


def false_alarm_rates(nodes: int, rows: int, tail_fraction: float, repeats: int, test_size: int,
                      seed: int) -> np.ndarray:
    """Mean fraction (over ``repeats`` fits) of fresh normal requests scoring at least -log(level), per level."""
    import rca_engine
    from rca_engine.synthetic import random_system

    rng = np.random.default_rng([seed, nodes])
    system = random_system(nodes, rng)
    graph = rca_engine.invert_call_graph(list(system.call_graph.edges))
    test = system.simulate(test_size, rng)["s0"].to_numpy()
    out = np.zeros(len(LEVELS))
    for rep in range(repeats):
        train = system.simulate(rows, np.random.default_rng([seed, nodes, rows, rep]))
        model = rca_engine.fit(graph, train, system.structure, seed=rep, tail_fraction=tail_fraction)
        scores = model.it_score("s0", test, base="upper")
        out += np.array([np.mean(scores >= -np.log(level)) for level in LEVELS])
    return out / repeats


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer graphs, sizes and repeats")
    ap.add_argument("--repeats", type=int, default=4, help="fits per (graph, training size)")
    ap.add_argument("--test-size", type=int, default=200_000, help="fresh normal requests scored per fit")
    args = ap.parse_args(argv)
    graphs = (6,) if args.quick else (6, 15, 30)
    sizes = (100, 1000) if args.quick else (100, 300, 1000, 3000)
    repeats = 2 if args.quick else args.repeats
    cells = [(g, n) for g in graphs for n in sizes]
    rows = []
    with tqdm(total=len(cells) * 2, desc="calibration", unit="cell") as bar:
        for g, n in cells:
            row: list[object] = [g, n]
            for tail in (0.0, 0.1):
                rates = false_alarm_rates(g, n, tail, repeats, args.test_size, seed=7)
                row += [f"{r:.1e} ({r / lv:.1f}x)" for r, lv in zip(rates, LEVELS, strict=True)]
                bar.update(1)
            rows.append(row)
    header = ["nodes", "training traces"] + [f"{name}: >= {-np.log(lv):.1f} nats (expect {lv:.0e})"
                                             for name in ("empirical", "tails 0.1") for lv in LEVELS]
    body = "\n".join([
        f"Fraction of {args.test_size:,} fresh normal requests scoring at or above each threshold (mean of {repeats} "
        "fits; in brackets: times the nominal rate). 'empirical' = tail_fraction 0 (DoWhy's noise model), "
        "'tails 0.1' = what `whyslow serve` fits.",
        "",
        markdown_table(header, rows),
        "",
        "Reading: at 1e-2 both are calibrated. Further out the empirical model never simulates an own time beyond "
        "the largest one in training, so with a few hundred traces a 1-in-10,000 threshold (the serve default, "
        "9.21 nats) flags normal requests several times too often; exponential tails fitted to each node's top 10 % "
        "bring the rate close to nominal. The remaining excess comes from the lognormal own times, whose tails are "
        "heavier than exponential.",
    ])
    write_result("calibration", "IT score calibration on normal data (false alarms)",
                 command_line("benchmarks.calibration", argv), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
