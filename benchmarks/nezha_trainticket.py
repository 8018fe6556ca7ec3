"""Train-Ticket traces of Nezha (FSE 2023): service-level top-1/3/5 of the injected service, 17 latency faults.

Two span-level baselines computed directly from the CSV spans, and the real whyslow path: CSV spans -> OTLP
requests (``collector_processor.csv_spans``) -> real OTLP/gRPC export into ``OtlpGrpcReceiver`` -> ``Pipeline`` ->
SQLite store -> features per entry point -> ``rca_engine.fit`` on fault-free traces -> attribution of each
outlier trace during a fault -> sum of contributions per service over the fault's outlier traces.

Normal (fault-free) data: the ``construct_data`` minute 11:39 (62 traces) plus, for every fault, the traces of
its window that ended before the injection (the first of the 3 files is mostly pre-injection, ~40 traces each),
about 510 traces in all. Faults are ~7 minutes apart and last 3, so these pre-injection traces are clean.
Fault traces: traces of the window that started at or after the injection.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmarks.common import (
    TopK,
    command_line,
    dataset_path,
    markdown_table,
    rank_by_score,
    update_floor,
    write_result,
)
from benchmarks.nezha_data import Fault, fault_free_file, load_faults, own_times, read_spans, trace_start

KS = (1, 3, 5)


@dataclass
class Windows:
    """Span-level own times split into fault-free data and one frame per fault."""

    faults: list[Fault]
    normal: pd.DataFrame  # own_times rows of the fault-free traces
    normal_trace_ids: set[str]
    fault_sets: list[pd.DataFrame]  # own_times rows of each fault's post-injection traces
    fault_trace_ids: list[set[str]]
    files: list[Path] = field(default_factory=list)


def load_windows(root: Path, only: Sequence[int] | None = None) -> Windows:
    """All faults, or only the faults with these indices (their pre-injection traces then form, with the
    11:39 minute, the fault-free data)."""
    faults = [f for f in load_faults(root) if only is None or f.index in only]
    normal_parts = [own_times(read_spans([fault_free_file(root)]))]
    fault_sets, fault_ids, files = [], [], [fault_free_file(root)]
    for f in faults:
        spans = read_spans(f.files)
        files += [p for p in f.files if p.exists()]
        start = trace_start(spans)
        end = spans.groupby("TraceID")["EndTimeUnixNano"].transform("max")
        pre = set(spans.loc[end < f.inject_ns, "TraceID"])
        post = set(spans.loc[start >= f.inject_ns, "TraceID"])
        o = own_times(spans)
        normal_parts.append(o[o.TraceID.isin(pre)])
        fault_sets.append(o[o.TraceID.isin(post)])
        fault_ids.append(post)
    normal = pd.concat(normal_parts, ignore_index=True)
    return Windows(faults, normal, set(normal.TraceID), fault_sets, fault_ids, sorted(set(files)))


def median_shift_ranking(normal: pd.DataFrame, fault: pd.DataFrame, kinds: tuple[str, ...]) -> list[str]:
    """Services ranked by the largest shift (ms) of the median own time of one of their nodes."""
    base = normal.groupby("node")["own_ms"].median()
    sel = fault[fault["kind"].isin(kinds)]
    med = sel.groupby("node")["own_ms"].median()
    svc = sel.groupby("node")["node_service"].first()
    shift = med - base.reindex(med.index).fillna(0.0)
    return rank_by_score(shift.groupby(svc).max().to_dict())


# ----------------------------------------------------------------------------------------------------------
# the whyslow pipeline


@dataclass
class PipelineRun:
    """Features per entry point as the collector stored them."""

    store: object
    entries: list[str]
    stats: dict
    seconds: float


def ingest(files: list[Path], data_dir: Path) -> PipelineRun:
    """CSV spans -> OTLP requests -> real OTLP/gRPC into the collector -> SQLite store."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    import collector_processor as cp
    from collector_processor import csv_spans

    t0 = time.perf_counter()
    store = cp.open_store(str(data_dir))
    pipeline = cp.Pipeline(store, _collector_config(cp))
    receiver = cp.OtlpGrpcReceiver(pipeline, "127.0.0.1:0")
    receiver.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            for request in tqdm(_requests(csv_spans, files), desc="OTLP export", unit="req", leave=False):
                stub.Export(request, timeout=60)
        pipeline.flush()
    finally:
        receiver.stop(1.0)
    return PipelineRun(store, list(store.entry_points()), dict(pipeline.stats()), time.perf_counter() - t0)


def _collector_config(cp):  # the collector's default configuration object
    cfg = getattr(cp, "PipelineConfig", None) or getattr(cp, "Config", None)
    return cfg() if cfg is not None else None


def _requests(csv_spans, files: list[Path]):
    for path in files:
        yield from csv_spans.requests_from_csv(path)


AGGREGATIONS = {
    "node metadata": "each node counts for its own service (call gaps for the callee, DB calls for the DB)",
    "DB to caller": "call gaps for the callee, DB calls for the calling service",
    "gaps split": "call gaps count half for the callee, half for the caller; DB calls for the calling service",
}


def owners(graph, node: str, how: str) -> list[tuple[str, float]]:
    """(service, weight) pairs that a node's contribution is credited to under aggregation ``how``.

    A call gap is the network and queueing between two pods: a delay injected on either pod's interface shows
    there, so "gaps split" credits both ends; the service whose pod is common to many anomalous gaps then
    wins. DB client spans are timed in the caller's pod (the DB itself is not instrumented).
    """
    info = graph.nodes.get(node)
    if info is None:
        return [(str(node).split(":")[0], 1.0)]
    if how == "node metadata" or info.kind not in ("call_gap", "db", "messaging"):
        return [(info.service, 1.0)]
    callers = [a for a, b in graph.call_edges if b == node]
    caller = graph.nodes[callers[0]].service if callers and callers[0] in graph.nodes else info.service
    if info.kind == "call_gap":
        return [(info.service, 1.0)] if how == "DB to caller" else [(info.service, 0.5), (caller, 0.5)]
    return [(caller, 1.0)]


@dataclass
class EngineResult:
    rankings: dict[str, list[list[str]]]  # aggregation -> one service ranking per fault
    outliers: list[int]  # outlier traces per fault
    attributed: list[int]  # of which attributed (their entry point had a model)
    notes: list[str]


def engine_rankings(run: PipelineRun, w: Windows, mechanisms: str, threshold: float, min_normal: int | None = None,
                    max_per_entry: int = 10, num_samples: int = 1000, max_permutations: int = 64,
                    repair: bool = True, progress: bool = True) -> EngineResult:
    """Fit per entry point on fault-free traces, attribute the fault traces, sum contributions per service.

    Per fault and entry point, the ``max_per_entry`` fault traces with the highest IT score at or above
    ``threshold`` are attributed (the Shapley values of a 100-node graph take ~0.3-1 s each). An entry point
    needs ``min_normal`` fault-free traces: 10 with the sum/max structure (nothing is regressed, only noise
    distributions are learned), 30 with learned mechanisms.
    """
    if min_normal is None:
        min_normal = 10 if mechanisms == "structure" else 30
    import rca_engine

    store = run.store
    per_fault = {how: [dict() for _ in w.faults] for how in AGGREGATIONS}
    outliers = [0] * len(w.faults)
    attributed = [0] * len(w.faults)
    notes: list[str] = []
    for entry in tqdm(run.entries, desc=f"engine ({mechanisms})", unit="entry", disable=not progress, leave=False):
        df = store.features(entry)
        graph = store.graph(entry)
        causal = graph.causal_graph()
        cols = [c for c in df.columns if not str(c).startswith("__") and c in causal]
        causal = causal.subgraph(cols).copy()
        credit = {how: {n: owners(graph, n, how) for n in causal} for how in AGGREGATIONS}
        ids = df.index.astype(str)
        normal = df.loc[ids.isin(w.normal_trace_ids), cols].astype(float)
        if len(normal) < min_normal:
            notes.append(f"{entry}: {len(normal)} fault-free traces (< {min_normal}), not modelled")
            continue
        mech = graph.mechanisms() if mechanisms == "structure" else mechanisms
        if isinstance(mech, dict):
            mech = {k: v for k, v in mech.items() if k in causal}
        if repair:
            causal, mech, moved = reparent_wrappers(causal, normal, mech)
            notes.extend(f"{entry}: wrapper {m}" for m in moved)
        try:
            model = rca_engine.fit(causal, normal, mechanisms=mech, min_rows=min_normal)
        except rca_engine.RCAError as err:
            notes.append(f"{entry}: not modelled ({err})")
            continue
        target = _entry_node(entry, cols)
        for i, ids_f in enumerate(w.fault_trace_ids):
            rows = df.loc[ids.isin(ids_f), cols].astype(float)
            if rows.empty:
                continue
            scores = rca_engine.outlier_scores(model, rows)[target].to_numpy()
            keep = np.argsort(-scores)[: max_per_entry]
            keep = keep[scores[keep] >= threshold]
            outliers[i] += int((scores >= threshold).sum())
            if keep.size == 0:
                continue
            expls = rca_engine.attribute_many(model, target, rows.iloc[keep], num_samples=num_samples,
                                              max_permutations=max_permutations)
            attributed[i] += len(expls)
            for expl in expls:
                for node, c in expl.contributions.items():
                    if c <= 0:
                        continue
                    for how, table in per_fault.items():
                        for svc, weight in credit[how].get(node, [(str(node), 1.0)]):
                            table[i][svc] = table[i].get(svc, 0.0) + weight * float(c)
    rankings = {how: [rank_by_score(d) for d in tables] for how, tables in per_fault.items()}
    return EngineResult(rankings, outliers, attributed, notes)


def reparent_wrappers(causal: nx.DiGraph, normal: pd.DataFrame, mechanisms: dict[str, str] | str,
                      tol: float = 0.05, share: float = 0.9) -> tuple[nx.DiGraph, dict[str, str] | str, list[str]]:
    """Benchmark-side repair of "wrapper" spans: a leaf span that envelops a sibling call.

    Spring Cloud Gateway's ``FilteringWebHandler.handle`` span wraps the proxied call, but the instrumentation
    parents the outgoing HTTP client span to the root, so the wrapper looks like a parallel leaf sibling whose
    latency equals the whole request; under the root's ``max`` mechanism all variation then flows through the
    wrapper and it takes the blame. When, in the fault-free data, a leaf L is within ``tol`` above a sibling S
    in at least ``share`` of the traces, S is made a cause of L with ``L = own + S`` (what the trace would say
    had the client span been parented to the wrapper).
    """
    g = causal.copy()
    mech = dict(mechanisms) if isinstance(mechanisms, dict) else mechanisms
    moved: list[str] = []
    for node in list(g.nodes):
        parents = list(g.predecessors(node))
        leaves = [p for p in parents if g.in_degree(p) == 0]
        for leaf in leaves:
            for sib in parents:
                if sib == leaf or sib not in normal or leaf not in normal:
                    continue
                lv, sv = normal[leaf].to_numpy(), normal[sib].to_numpy()
                ok = (lv >= sv) & (lv <= sv * (1 + tol) + 1.0) & (sv > 0)
                if ok.mean() >= share and not nx.has_path(g, leaf, sib):
                    g.add_edge(sib, leaf)
                    if isinstance(mech, dict):
                        mech[leaf] = "sum"
                    moved.append(f"{sib} -> {leaf}")
                    break
    return g, mech, moved


def _entry_node(entry: str, cols: list[str]) -> str:
    if entry in cols:
        return entry
    raise KeyError(f"entry point {entry!r} is not a feature column")


# ----------------------------------------------------------------------------------------------------------

PUBLISHED = [  # Nezha paper, Table 3, both Train-Ticket days (45 faults incl. code faults), service level, %
    ("MicroRank (traces) [N]", 15.56, 24.44, 35.56),
    ("TraceAnomaly (traces) [N]", 13.33, 28.89, 33.33),
    ("MicroScope (metrics) [N]", 17.78, 26.67, 35.56),
    ("MicroRCA (metrics) [N]", 20.00, 31.11, 44.44),
    ("PDiagnose (multi-source) [N]", 8.89, 13.33, 22.22),
    ("Nezha (traces+logs+metrics) [N]", 86.67, 97.78, 97.78),
]


ANALYSIS = """\
**Where we stand and why** (engine at commit 93c9c1f, structure mechanisms). The trace-derived causal attribution
(sum/max structure from the collector, fitted on ~510 fault-free traces, 10-120 per entry point) names the injected
service first in 14/17 faults (attributing up to 30 outlier traces per fault and entry point — nearly all of
them — gives the same figures as 10), far above the published trace-based methods (MicroRank, TraceAnomaly: 13-16 % top-1,
on the full 45-fault set, not the same faults), but **one fault below the simple median shift of own time or
call gap (16/17)**. It beats that baseline on the CPU-contention fault 1 (rank 4 vs 6) and loses on faults 6
(food CPU contention) and 12 (preserve network delay). Reasons found while building it: (1) a fault is judged from
its outlier traces only, while the baseline takes the median over all ~100 traces of the window, so a few naturally
slow traces of another service can outweigh a mild fault (the CPU-contention fault 6 barely slows requests); (2) the preserve and execute flows
have only 20-27 fault-free traces; (3) the gateway's `FilteringWebHandler.handle` wrapper span took all the blame
until the benchmark re-parented it (`reparent_wrappers`; with an earlier engine version this moved top-1 from 4/17
to 9/17, and requiring 10 instead of 30 fault-free traces for structure mechanisms to 11/17; fix proposed to the
collector). Crediting DB calls to the calling service instead of `mysql` lifts top-5 to 16/17; crediting call gaps
half to each end ("gaps split") helps when the faulty pod's outgoing calls are delayed but costs the faults whose
callers have few other calls. The same pipeline with *learned linear* mechanisms
instead of the collector's sum/max structure names 9-11/17 first: with 10-120 fault-free traces per entry point the
structure, read off the traces, beats regressions. Own time alone (2/17; the issue quotes 5/17 for its variant)
misses network delays:
they surface in the call gaps, which the collector models as nodes.
"""


def evaluate(rankings: list[list[str]], faults: list[Fault]) -> TopK:
    res = TopK(KS)
    for ranking, f in zip(rankings, faults, strict=True):
        res.add(ranking, f.service)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="baselines and one engine variant only")
    ap.add_argument("--threshold", type=float, default=3.0, help="IT score (nats) of an outlier trace")
    ap.add_argument("--mechanisms", nargs="+", default=["structure", "linear"],
                    help="engine variants of the full run: structure (the collector's sum/max), linear, auto")
    ap.add_argument("--max-per-entry", type=int, default=30,
                    help="outlier traces attributed per fault and entry point (highest IT scores first)")
    args = ap.parse_args(argv)
    root = dataset_path("nezha_trainticket")
    w = load_windows(root)
    methods: dict[str, list[list[str]]] = {
        "median own-time shift (spans only)": [median_shift_ranking(w.normal, f, ("span",)) for f in w.fault_sets],
        "median own-time or call-gap shift": [median_shift_ranking(w.normal, f, ("span", "call_gap"))
                                              for f in w.fault_sets],
    }
    extra: list[str] = []
    try:
        import collector_processor  # noqa: F401
        import rca_engine
        from collector_processor import csv_spans  # noqa: F401
        if not hasattr(rca_engine, "fit") or not hasattr(collector_processor, "Pipeline"):
            raise ImportError("engine or collector API not present yet")
    except ImportError as err:
        extra.append(f"The whyslow pipeline was not run: {err}.")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run = ingest(w.files, Path(tmp))
            extra.append(f"Collector: {len(run.entries)} entry points, ingest {run.seconds:.1f} s, stats {run.stats}.")
            # "auto" (gradient boosting per node when it wins on held-out error) takes minutes per entry point on
            # these 50-120 node graphs with 10-120 rows; it is left to --mechanisms auto
            variants = ["structure"] if args.quick else args.mechanisms
            for mech in variants:
                t0 = time.perf_counter()
                er = engine_rankings(run, w, mech, args.threshold, max_per_entry=args.max_per_entry)
                for how, rankings in er.rankings.items():
                    methods[f"whyslow engine ({mech} mechanisms), {how}"] = rankings
                name = f"whyslow engine ({mech} mechanisms)"
                extra.append(f"{name}: {time.perf_counter() - t0:.1f} s; outlier traces per fault {er.outliers}, "
                             f"attributed {er.attributed}. " + " ".join(er.notes[:5]))
    res = {name: evaluate(r, w.faults) for name, r in methods.items()}
    last = next((n for n in methods if n.endswith("node metadata")), list(methods)[1])
    rows = [[n, r.cell(1, True), r.cell(3, True), r.cell(5, True)] for n, r in res.items()]
    rows += [[n, f"{a:.2f} %", f"{b:.2f} %", f"{c:.2f} %"] for n, a, b, c in PUBLISHED]
    per_fault = [[f.index, f.kind, f.service] + [_rank_str(methods[n][i], f.service) for n in methods]
                 + [", ".join(methods[last][i][:3])] for i, f in enumerate(w.faults)]
    body = "\n".join([
        f"{len(w.faults)} latency faults of 2023-01-30; fault-free data: {len(w.normal_trace_ids)} traces "
        f"(11:39 minute + pre-injection traces of each window); fault traces: "
        f"{sum(len(s) for s in w.fault_trace_ids)}.",
        "",
        markdown_table(["method", "top-1", "top-3", "top-5"], rows),
        "",
        "Rank of the injected service per fault:",
        "",
        markdown_table(["fault", "type", "injected service"] + list(methods) + [f"top 3 of {last}"], per_fault),
        "",
        *extra,
        "",
        ANALYSIS,
        "",
        "[N] Nezha paper (Yu et al., ESEC/FSE 2023) Table 3: both Train-Ticket days, 45 faults including code-level "
        "faults; not the same fault set as our 17 (copied in the dataset README), so only indicative.",
        "Aggregation of the engine's contributions over a fault's outlier traces: "
        + "; ".join(f"*{k}*: {v}" for k, v in AGGREGATIONS.items()) + ".",
        "Baselines: per node (service:operation, or net:callee for call gaps) the median own time during the "
        "fault minus the median over the fault-free traces; a service scores its largest node shift; call gaps "
        "count for the callee service.",
    ])
    write_result("nezha_trainticket", "Train-Ticket (Nezha) traces: injected service top-k",
                 command_line("benchmarks.nezha_trainticket", argv), body)
    floor = {f"{n}/top{k}": r.recall(k) for n, r in res.items() for k in KS}
    update_floor("nezha_trainticket", floor)
    return 0


def _rank_str(ranking: list[str], truth: str) -> str:
    try:
        return str(ranking.index(truth) + 1)
    except ValueError:
        return "-"


if __name__ == "__main__":
    raise SystemExit(main())
