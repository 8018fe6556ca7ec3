"""`whyslow regression`: which nodes moved a statistic of the target between two CSV tables (offline).

    whyslow regression --graph calls.json --call-graph --baseline before.csv --comparison after.csv \\
        --target frontend --stat p99 --mechanisms sum [--what-if caching=0.7] [--json]

Both CSVs have one column per node (latency in ms; 0 where a call did not happen). The graph file is read as by
``whyslow rca``. ``--baseline-calls`` / ``--comparison-calls``: CSVs of the calls per request of each node, row
for row with the latency CSVs: a changed call count is then the player caller→callee. Errors exit with status 2
and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import rca_engine
from plugin.commands.rca import (
    MAX_INTERVALS,
    CliError,
    _finite,
    add_input_arguments,
    load_inputs,
    parse_mechanisms,
    read_csv,
)

MAX_NUM_SAMPLES = 200_000


def register(subparsers: Any) -> None:
    """Add the ``regression`` sub-command to the ``whyslow`` parser."""
    p = subparsers.add_parser(
        "regression",
        help="attribute the change of p99 (or mean, pNN, tail) between two CSVs to the nodes that changed (ms)",
        description="Find the nodes whose own time (or mechanism) changed between the baseline and the comparison "
        "CSV and split the change of the target's statistic among them (Shapley values, in the target's unit).",
    )
    add_input_arguments(p, {"baseline": "CSV of the period before (one column per node)",
                            "comparison": "CSV of the period after"},
                        target="node whose statistic changed (e.g. the entry service)")
    p.add_argument("--stat", default="p99", help="mean | median | p50 | p90 | p95 | p99 | any pNN | tail>THRESHOLD "
                   "(default p99)")
    p.add_argument("--baseline-calls", default=None, help="CSV of calls per request of each node in the baseline "
                   "(row for row with --baseline; with --comparison-calls: a changed call count is its own player)")
    p.add_argument("--comparison-calls", default=None, help="the same for --comparison")
    p.add_argument("--mechanisms", default="auto",
                   help="auto | linear | nonlinear | sum | max, or a JSON object / JSON file node -> name; sum / max "
                        "(latency = own time + callees) are exact and fast")
    p.add_argument("--alpha", type=float, default=0.05, help="false discovery rate of the per-node change test")
    p.add_argument("--intervals", type=int, default=50, help="bootstrap replicates for intervals (0 = none)")
    p.add_argument("--num-samples", type=int, default=None, help="rows per simulated coalition (default: the larger "
                   "table, at least 2000)")
    p.add_argument("--independent", action="store_true", help="resample each node's own time independently instead "
                   "of whole rows (keeps no correlation between nodes of one request)")
    p.add_argument("--method", choices=("auto", "exact", "permutation"), default="auto", help="Shapley estimator")
    p.add_argument("--what-if", action="append", default=[], metavar="NODE=FACTOR",
                   help="also predict the statistic of the comparison had NODE's own time been scaled (0.7 or -30%%) "
                        "or at its baseline distribution (NODE=baseline); repeat for several nodes together")
    p.add_argument("--seed", type=int, default=0, help="random seed (results are deterministic under a seed)")
    p.add_argument("--dropna", action="store_true", help="drop rows with missing values")
    p.add_argument("--top", type=int, default=0, help="show only the N largest contributions (0 = all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``whyslow regression``; returns the exit status."""
    try:
        graph, (baseline, comparison) = load_inputs(args, {"baseline": "baseline", "comparison": "comparison"})
        if (args.baseline_calls is None) != (args.comparison_calls is None):
            raise CliError("--baseline-calls and --comparison-calls go together")
        counts = None if args.baseline_calls is None else (
            read_csv(Path(args.baseline_calls), "baseline calls"), read_csv(Path(args.comparison_calls),
                                                                            "comparison calls"))
        mechanisms = parse_mechanisms(args.mechanisms)
        if not 0 <= args.intervals <= MAX_INTERVALS or args.intervals == 1:
            raise CliError(f"--intervals must be 0 or 2..{MAX_INTERVALS}")
        if args.num_samples is not None and not 100 <= args.num_samples <= MAX_NUM_SAMPLES:
            raise CliError(f"--num-samples must be 100..{MAX_NUM_SAMPLES:,}")
        interventions = parse_what_if(args.what_if)
        result = rca_engine.distribution_change(
            graph, baseline, comparison, args.target, stat=args.stat, mechanisms=mechanisms, alpha=args.alpha,
            intervals=args.intervals, num_samples=args.num_samples, joint=not args.independent, method=args.method,
            dropna=args.dropna, seed=args.seed, call_counts=counts)
        whatif = None
        if interventions:
            whatif = rca_engine.what_if(graph, comparison, args.target, interventions, stat=args.stat,
                                        baseline=baseline, mechanisms=mechanisms,
                                        intervals=args.intervals, num_samples=args.num_samples,
                                        dropna=args.dropna, seed=args.seed)
    except (CliError, rca_engine.RCAError) as exc:
        sys.stderr.write(f"whyslow regression: error: {exc}\n")
        return 2
    if args.json:
        payload = result.to_dict()
        if whatif is not None:
            payload["what_if"] = whatif.to_dict()
        sys.stdout.write(json.dumps(_finite(payload)) + "\n")
    else:
        sys.stdout.write(render(result, args.top) + "\n")
        if whatif is not None:
            sys.stdout.write(render_what_if(whatif) + "\n")
    return 0


def parse_what_if(items: list[str]) -> dict[str, float | str]:
    """``NODE=FACTOR`` / ``NODE=-30%`` / ``NODE=baseline`` items as a node -> intervention mapping."""
    out: dict[str, float | str] = {}
    for item in items:
        node, sep, value = item.rpartition("=")
        if not sep or not node or not value:
            raise CliError(f"--what-if expects NODE=FACTOR, NODE=-30% or NODE=baseline, got {item!r}")
        out[node] = value
    return out


def _unit(stat: str) -> str:
    return "" if stat.startswith("tail") else " ms"


def render(r: rca_engine.RegressionResult, top: int = 0) -> str:
    """Readable summary and ranked table of a regression attribution."""
    u = _unit(r.stat)
    lines = [f"{r.target} {r.stat}: {r.baseline_value:.4g}{u} -> {r.comparison_value:.4g}{u} "
             f"(observed change {r.observed_change:+.4g}{u}; {r.baseline_rows} vs {r.comparison_rows} rows)"]
    iv = f", 95% interval [{r.change_interval[0]:+.4g}, {r.change_interval[1]:+.4g}]" if r.change_interval else ""
    lines.append(f"explained by changed nodes {r.modelled_change:+.4g}{u}{iv}; unexplained {r.unexplained:+.4g}{u}; "
                 f"noise floor ±{r.noise_floor:.4g}{u}")
    if not r.significant:
        lines.append("no change beyond resampling noise" + (" (no node changed significantly)"
                                                           if not r.contributions else ""))
    ranked = r.root_causes[:top] if top > 0 else r.root_causes
    if not ranked:
        return "\n".join(lines)
    width = max([len(str(n)) for n in ranked] + [4])
    scale = max([abs(v) for v in r.contributions.values()] + [1e-12])
    lines.append(f"  {'#':>2}  {'node':<{width}}  {'change':>10}  {'':<20}  {'95% interval':<22}  "
                 f"{r.stat} had this node not changed")
    for i, node in enumerate(ranked, 1):
        c = r.contributions[node]
        bar = ("#" if c >= 0 else "-") * int(round(20 * abs(c) / scale))
        lo_hi = r.intervals.get(node)
        iv_text = f"[{lo_hi[0]:+.4g}, {lo_hi[1]:+.4g}]" if lo_hi else ""
        kind = "" if r.kinds.get(node, "changed") == "changed" else f" ({r.kinds[node]})"
        cf = r.counterfactuals.get(node)
        lines.append(f"  {i:>2}  {str(node):<{width}}  {c:+9.4g}{u if u else ' '}  {bar:<20}  {iv_text:<22}  "
                     f"{'' if cf is None else f'{cf:.4g}{u}'}{kind}".rstrip())
    return "\n".join(lines)


def render_what_if(w: rca_engine.WhatIfResult) -> str:
    """One paragraph: the statistic now and under the intervention."""
    u = _unit(w.stat)
    what = ", ".join(f"{n} {'at its baseline' if v == 'baseline' else f'x{v:g}'}" for n, v in w.interventions.items())
    iv = f" (95% interval {w.interval[0]:.4g} .. {w.interval[1]:.4g})" if w.interval else ""
    return f"what if {what}: {w.target} {w.stat} {w.current_value:.4g}{u} -> {w.predicted_value:.4g}{u}{iv}"
