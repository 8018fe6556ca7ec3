"""`whyslow rca`: attribute outliers in a CSV to root causes with rca_engine (offline, no server needed).

    whyslow rca --graph edges.json --train normal.csv --sample outliers.csv --target Website [--json]

The graph file is a JSON edge list ({"edges": [[cause, effect], ...]}, a list of pairs, a list of
{"source": .., "target": ..} objects, networkx node-link JSON, or an adjacency object {node: [nodes]}) or a
two-column CSV (comma, tab or semicolon separated, optional header); numeric node names match CSV headers.
``--call-graph`` says the edges are caller -> callee (they are inverted into cause -> effect). Errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pandas as pd

import rca_engine

# bounds of the cost knobs: 10^8 Monte-Carlo samples took 36 s and 10.7 GB for a 3-node graph
MAX_NUM_SAMPLES = 1_000_000
MAX_INTERVALS = 1000
HEADER_WORDS = {"source", "target", "cause", "effect", "caller", "callee", "from", "to", "parent", "child",
                "src", "dst", "dest", "destination", "upstream", "downstream", "u", "v"}


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def register(subparsers: Any) -> None:
    """Add the ``rca`` sub-command to the ``whyslow`` parser."""
    p = subparsers.add_parser(
        "rca",
        help="explain outliers in a CSV: each upstream node's causal contribution (Shapley, nats)",
        description="Fit a causal model of the training CSV on the given graph and attribute the target's value "
        "in every row of the sample CSV to the nodes upstream of it.",
    )
    add_input_arguments(p, {"train": "CSV of normal operation, one column per node",
                            "sample": "CSV with the outlier row(s) to explain"},
                        target="node whose value is explained (e.g. the entry service)")
    p.add_argument("--mechanisms", default=None,
                   help="auto | linear | additive | maxlinear | nonlinear | sum | max, or a JSON object / JSON file "
                        "node -> name (default: the preset's, auto)")
    p.add_argument("--preset", choices=tuple(rca_engine.PRESETS), default=None,
                   help="engine settings: default, latency (call-graph latencies: one-sided score, noise tails), "
                        "metrics (service metric tables: latency's settings, additive mechanisms also fitted on the "
                        "explained row) or dowhy; the flags below override single settings")
    p.add_argument("--seed", type=int, default=None, help="random seed (results are deterministic under a seed)")
    p.add_argument("--intervals", type=int, default=0, help="bootstrap refits for confidence intervals (0 = none)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="Monte-Carlo samples per coalition (default 3000 for exact Shapley, 1000 for sampling)")
    p.add_argument("--method", choices=("auto", "exact", "permutation"), default=None, help="Shapley estimator")
    p.add_argument("--tail", choices=("fitted", "dowhy"), default=None, help="tail probability estimator")
    p.add_argument("--base", choices=rca_engine.BASE_SCORES, default=None,
                   help="base outlier score: median (two-sided, DoWhy's default), zscore, or upper (one-sided: only "
                        "large values are outliers, as for latencies and error counts)")
    p.add_argument("--game", choices=("counting", "tail"), default=None,
                   help="set function: counting game scaled to the score (stable, default) or fitted tail everywhere")
    p.add_argument("--dowhy-compatible", action="store_true", default=None,
                   help="DoWhy 0.14's exact algorithm (for comparisons)")
    p.add_argument("--tail-fraction", type=float, default=None,
                   help="exponential noise tails beyond this training quantile (0-0.25; 0 = empirical noise as in "
                        "DoWhy; whyslow serve uses 0.1, which calibrates rare-event scores from little data)")
    p.add_argument("--fit-on-sample", action="store_true",
                   help="also fit the mechanisms f on the --sample rows (the incident): a fault changes its root "
                        "cause's noise, not f, and the incident shows how far a change travels where the training "
                        "data never moved; noise distributions still come from --train only")
    p.add_argument("--dropna", action="store_true", help="drop training rows with missing values")
    p.add_argument("--top", type=int, default=0, help="show only the N largest contributions (0 = all)")
    p.add_argument("--json", action="store_true", help="print one JSON object per sample row (JSON lines)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``whyslow rca``; returns the exit status."""
    try:
        graph, (train, sample) = load_inputs(args, {"train": "training data", "sample": "sample"})
        mechanisms = parse_mechanisms(args.mechanisms) if args.mechanisms is not None else None
        num_samples = args.num_samples
        if not 0 <= args.intervals <= MAX_INTERVALS or not 100 <= (num_samples or 100) <= MAX_NUM_SAMPLES:
            raise CliError(f"--intervals must be 0..{MAX_INTERVALS} and --num-samples 100..{MAX_NUM_SAMPLES:,}")
        options = rca_engine.preset(args.preset or "default").replace(**{
            k: v for k, v in {"seed": args.seed, "tail_fraction": args.tail_fraction, "num_samples": num_samples,
                              "method": args.method, "tail": args.tail, "base": args.base,
                              "dowhy_compatible": args.dowhy_compatible, "game": args.game,
                              "dropna": args.dropna or None}.items() if v is not None})
        model = rca_engine.fit(graph, train, mechanisms, options=options,
                               incident=sample if args.fit_on_sample else None)
        explanations = [rca_engine.attribute(model, args.target, sample.iloc[[i]], intervals=args.intervals)
                        for i in range(len(sample))]
    except (CliError, rca_engine.RCAError) as exc:
        return fail(str(exc))
    out = sys.stdout
    for i, expl in enumerate(explanations):
        if args.json:
            payload = expl.to_dict()
            payload["row"] = i
            out.write(json.dumps(_finite(payload)) + "\n")
        else:
            out.write(render(expl, i, len(explanations), args.top) + "\n")
    return 0


def fail(message: str) -> int:
    sys.stderr.write(f"whyslow rca: error: {message}\n")
    return 2


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: replace them with null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def add_input_arguments(p: argparse.ArgumentParser, tables: dict[str, str], target: str) -> None:
    """The offline commands' inputs: ``--graph``, one required CSV option per ``tables`` item (option name without
    dashes -> help), ``--target`` and ``--call-graph``."""
    p.add_argument("--graph", required=True, help="edge list: JSON or 2-column CSV (cause -> effect unless --call-graph)")
    for name, help_text in tables.items():
        p.add_argument(f"--{name}", required=True, help=help_text)
    p.add_argument("--target", required=True, help=target)
    p.add_argument("--call-graph", action="store_true", help="edges are caller -> callee (inverted to cause -> effect)")


def load_inputs(args: argparse.Namespace, tables: dict[str, str]) -> tuple[Any, list[pd.DataFrame]]:
    """The graph and the CSVs named by ``tables`` (option name without dashes -> what it is, for errors), with
    the target checked to be a node of the graph; :class:`CliError` otherwise."""
    graph = read_graph(Path(args.graph), call_graph=args.call_graph)
    frames = [read_csv(Path(getattr(args, name.replace("-", "_"))), what) for name, what in tables.items()]
    if args.target not in graph:
        raise CliError(f"target {args.target!r} is not a node of the graph ({graph.number_of_nodes()} nodes)")
    return graph, frames


def read_csv(path: Path, what: str) -> pd.DataFrame:
    """A CSV as a DataFrame, or :class:`CliError` with the reason."""
    if not path.is_file():
        raise CliError(f"{what} file not found: {path}")
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
        frame = pd.read_csv(path, sep=_delimiter(first))
    except pd.errors.EmptyDataError:
        raise CliError(f"{what} file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"cannot read {what} CSV {path}: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise CliError(f"{what} file has no data rows: {path}")
    return frame


def read_graph(path: Path, call_graph: bool = False) -> Any:
    """Cause -> effect DAG from a JSON or CSV edge list (inverted when ``call_graph``)."""
    if not path.is_file():
        raise CliError(f"graph file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read graph file {path}: {exc}") from None
    edges, nodes = (_json_edges(text, path) if path.suffix.lower() == ".json" or text.lstrip()[:1] in "[{"
                    else _csv_edges(text))
    if not edges and not nodes:
        raise CliError(f"graph file {path} has no edges")
    if call_graph:
        graph = rca_engine.invert_call_graph(edges)
        graph.add_nodes_from(nodes)
        return graph
    return rca_engine.graph_from_edges(edges, nodes)


def _json_edges(text: str, path: Path) -> tuple[list[tuple[Hashable, Hashable]], list[Hashable]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"graph file {path} is not valid JSON: {exc}") from None
    nodes: list[Hashable] = []
    if isinstance(data, dict) and "edges" not in data and "links" not in data:
        if not all(isinstance(v, list) for v in data.values()):
            raise CliError(f"graph file {path}: expected a list of edges, an object with an 'edges' list or an "
                           "adjacency object node -> [nodes]")
        nodes = [_node_name(k, path, k) for k in data]
        data = [[k, v] for k, vs in data.items() for v in vs]
    elif isinstance(data, dict):
        nodes = [_node_name(n.get("id", n.get("name")) if isinstance(n, dict) else n, path, n)
                 for n in data.get("nodes", [])]
        data = data.get("edges", data.get("links"))
    if not isinstance(data, list):
        raise CliError(f"graph file {path}: expected a list of edges or an object with an 'edges' list")
    edges: list[tuple[Hashable, Hashable]] = []
    for item in data:
        if isinstance(item, dict):
            a = item.get("source", item.get("cause", item.get("caller", item.get("from"))))
            b = item.get("target", item.get("effect", item.get("callee", item.get("to"))))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            a, b = item
        else:
            raise CliError(f"graph file {path}: bad edge {item!r} (expected [source, target])")
        edges.append((_node_name(a, path, item), _node_name(b, path, item)))
    return edges, nodes


def _node_name(value: object, path: Path, context: object) -> str:
    """A node name as the CSV column it refers to: strings as they are, numbers as CSV headers spell them."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        raise CliError(f"graph file {path}: node names must be non-empty strings or numbers, got {context!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _delimiter(first_line: str) -> str:
    """The separator of a CSV from its first line: comma, else tab, else semicolon."""
    return next((d for d in (",", "\t", ";") if d in first_line), ",")


def _csv_edges(text: str) -> tuple[list[tuple[Hashable, Hashable]], list[Hashable]]:
    lines = text.splitlines()
    delimiter = _delimiter(next((line for line in lines if line.strip()), ""))
    rows = [r for r in csv.reader(lines, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if rows and {c.strip().lower() for c in rows[0]} <= HEADER_WORDS:
        rows = rows[1:]
    edges: list[tuple[Hashable, Hashable]] = []
    for r in rows:
        if len(r) != 2 or not r[0].strip() or not r[1].strip():
            raise CliError(f"graph CSV: each line must be 'source,target', got {delimiter.join(r)!r}")
        edges.append((r[0].strip(), r[1].strip()))
    return edges, []


def parse_mechanisms(spec: str) -> str | dict[str, str]:
    """A mechanism name, or a JSON object (inline or in a file) node -> name."""
    if spec in rca_engine.MECHANISM_NAMES:
        return spec
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise CliError(f"--mechanisms must be one of {', '.join(rca_engine.MECHANISM_NAMES)} or a JSON "
                           f"object/file node -> name, got {spec!r}")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--mechanisms: invalid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CliError("--mechanisms JSON must be an object node -> mechanism name")
    return {str(k): v for k, v in data.items()}


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def render(expl: rca_engine.Explanation, row: int, rows: int, top: int = 0) -> str:
    """Readable ranked table of one explanation."""
    lines = []
    head = f"row {row}: " if rows > 1 else ""
    lines.append(f"{head}{expl.target} = {_fmt(expl.target_value)}  outlier score {expl.outlier_score:.2f} nats "
                 f"(rarer than 1 in {expl.rarer_than:,.0f})")
    ranked = expl.root_causes[:top] if top > 0 else expl.root_causes
    width = max([len(str(n)) for n in ranked] + [4])
    scale = max([abs(v) for v in expl.contributions.values()] + [1e-12])
    has_iv = bool(expl.intervals)
    iv_width = 18 if has_iv else 0
    lines.append(f"  {'#':>2}  {'node':<{width}}  {'nats':>7}  {'share':>6}  {'':<20}  "
                 f"{'95% interval' if has_iv else '':<{iv_width}}{'if this node had been typical'}".rstrip())
    for i, node in enumerate(ranked, 1):
        c = expl.contributions[node]
        share = c / expl.outlier_score if abs(expl.outlier_score) > 1e-12 else float("nan")
        n_bar = int(round(20 * abs(c) / scale))
        bar = ("#" * n_bar if c >= 0 else "-" * n_bar).ljust(20)
        iv = ""
        if has_iv:
            lo, hi = expl.intervals[node]
            iv = f"[{lo:6.2f}, {hi:6.2f}] "
        cf = expl.counterfactuals.get(node)
        cf_text = f"{expl.target} would be {_fmt(cf)} instead of {_fmt(expl.target_value)}" if cf is not None else ""
        lines.append(f"  {i:>2}  {str(node):<{width}}  {c:7.3f}  {share:6.1%}  {bar}  {iv:<{iv_width}}{cf_text}".rstrip())
    return "\n".join(lines)
