"""PetShop benchmark (Hardt et al., CLeaR 2024, arXiv:2311.04806): top-1/top-3 recall and specificity.

Protocol of the paper's ``rca_task.py``: causal graph = inverted call graph, normal period = ``noissue``,
each issue's target node/metric/statistic from ``target.json``, the abnormal window's row index 2 is analysed
(the traversal baseline searches forward from row 2 to the first anomalous row), an issue counts as found
when the ground-truth node is among the k best-scored nodes (an empty answer is a miss). Specificity: the
normal data is split at 50%, 60%, ... of its length, the later part plays "abnormal"; a method is right when
it names no root cause.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmarks.baselines import MadScorer, traversal
from benchmarks.common import (
    TopK,
    command_line,
    dataset_path,
    markdown_table,
    update_floor,
    write_result,
)
from benchmarks.petshop_data import SCENARIOS, Scenario, load_scenario, reduce

ROW = 2  # the row of the abnormal window the paper analyses
# A ranking: (causal graph, target node, metric, normal frame, abnormal frame) -> ranked root causes
# ([] = "no issue"). Frames have one column per node, oriented so that larger = worse (see `View`).
Ranking = Callable[[nx.DiGraph, str, str, pd.DataFrame, pd.DataFrame], list[str]]
# A view: (3-level metrics frame, metric, statistic) -> one column per node, larger = worse
View = Callable[[pd.DataFrame, str, str], pd.DataFrame]


def orient(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Larger = worse: latency as is, availability (percent) as unavailability ``100 - x``."""
    return 100.0 - frame if metric == "availability" else frame


def percent_view(metrics: pd.DataFrame, metric: str, statistic: str) -> pd.DataFrame:
    """The metric as the paper's methods see it: latency, or unavailability in percent."""
    return orient(reduce(metrics, metric, statistic), metric)


def error_count_view(metrics: pd.DataFrame, metric: str, statistic: str) -> pd.DataFrame:
    """Availability as failed requests per interval (unavailability % x requests / 100), latency as is.

    Errors propagate along calls as counts: a caller's request fails because a callee's request failed, so the
    caller's failed requests are its own plus (part of) its callees'. Percentages do not add up that way (a
    callee that serves a quarter of the caller's traffic at 8 % unavailability moves the caller by 2 %), which
    is what hides an availability culprit from a mechanism fitted to percentages.
    """
    if metric != "availability":
        return percent_view(metrics, metric, statistic)
    unavailable = percent_view(metrics, metric, statistic)
    requests = reduce(metrics, "requests", "Sum")
    return unavailable.mul(requests.reindex(columns=unavailable.columns)) / 100.0


@dataclass
class Method:
    """A root-cause method under the paper's protocol: how it views the metrics, then how it ranks."""

    rank: Ranking
    view: View = percent_view


def traversal_method(normal: pd.DataFrame, abnormal: pd.DataFrame, graph: nx.DiGraph, target: str,
                     search: bool = True) -> list[str]:
    """The benchmark's own baseline (MAD score > 5, anomalous nodes without anomalous causes)."""
    scorer = MadScorer().fit(normal)
    flags = scorer.anomalous(abnormal)
    scores = scorer.score(abnormal)
    if target not in flags.columns:
        return []
    row = ROW
    if search:
        for i in range(ROW, len(abnormal)):
            if flags[target].iloc[i]:
                row = i
                break
    if row >= len(abnormal) or not flags[target].iloc[row]:
        return []
    anomalous = {c: float(scores[c].iloc[row]) for c in flags.columns if flags[c].iloc[row]}
    return traversal(graph, target, anomalous)


# ----------------------------------------------------------------------------------------------------------
# our engine

@dataclass
class EngineConfig:
    """How the benchmark drives the engine.

    ``mechanisms``: one name for every metric or a dict metric -> name ("auto", "linear", "sum", ...).
    ``threshold``: IT score (nats) of the target's value against its own normal data below which we answer
    "no outlier, no root cause" (3 nats: rarer than 1 in 20); 0 disables the decision (ranking only).
    ``base``: the engine's base outlier score ("median": two-sided, DoWhy's; "upper": only larger = worse values
    are outliers). ``errors``: availability as failed-request counts (`error_count_view`) instead of percent.
    """

    mechanisms: str | dict[str, str] = "auto"
    threshold: float = 3.0
    base: str = "median"
    errors: bool = False
    tail_fraction: float = 0.0  # rca_engine.fit's exponential noise tails beyond the training range
    incident: bool = False  # mechanisms f also fitted on the abnormal window (rca_engine.fit's incident=)
    search: bool = False  # also look at rows after ROW (as the traversal baseline does)
    min_rows: int = 30  # a node needs this many measured normal rows to be modelled
    impute: str = "median"  # "median" | "interpolate"
    num_samples: int = 1000
    max_permutations: int = 64
    game: str = "counting"  # the engine's Shapley game ("counting" default, "tail": fitted tail in every coalition)

    def mechanism_for(self, metric: str) -> str:
        return self.mechanisms if isinstance(self.mechanisms, str) else self.mechanisms[metric]


def prepare(graph: nx.DiGraph, target: str, normal: pd.DataFrame, abnormal: pd.DataFrame, cfg: EngineConfig
            ) -> tuple[nx.DiGraph, pd.DataFrame, pd.DataFrame]:
    """Benchmark-side preprocessing: keep nodes with enough data, marginalise the others out of the graph
    (their causes become causes of their effects), impute NaNs (normal: by ``cfg.impute``; abnormal: the
    normal median, i.e. a missing measurement is taken as typical)."""
    counts = normal.notna().sum()
    keep = {c for c in normal.columns if counts[c] >= cfg.min_rows} | {target}
    g = graph.copy()
    for node in list(g.nodes):
        if node not in keep:
            preds, succs = list(g.predecessors(node)), list(g.successors(node))
            g.add_edges_from((p, s) for p in preds for s in succs if p != s)
            g.remove_node(node)
    # only the target's ancestors can explain it
    relevant = nx.ancestors(g, target) | {target} if target in g else {target}
    g = g.subgraph(relevant).copy()
    g.add_nodes_from([target])
    cols = sorted(g.nodes)
    norm = normal.reindex(columns=cols)
    if cfg.impute == "interpolate":
        norm = norm.interpolate(limit_direction="both")
    med = norm.median()
    norm = norm.fillna(med).fillna(0.0)
    ab = abnormal.reindex(columns=cols).fillna(med).fillna(0.0)
    return g, norm, ab


ENGINE_ERRORS: list[str] = []  # engine errors met during a run (each counts as an empty answer)


def engine_method(cfg: EngineConfig) -> Method:
    """Our engine under the paper's protocol; the model of a (target, metric, normal period) is fitted once."""
    import rca_engine

    cache: dict[tuple, tuple] = {}

    def model_for(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame):
        g, norm, ab = prepare(graph, target, normal, abnormal, cfg)
        key = (target, metric, normal.shape, normal.index[0], normal.index[-1], tuple(sorted(g.edges)))
        if cfg.incident:  # the model depends on the abnormal window too
            key += (ab.shape, ab.index[0], ab.index[-1])
        if key not in cache:
            model = rca_engine.fit(g, norm, mechanisms=cfg.mechanism_for(metric), tail_fraction=cfg.tail_fraction,
                                   incident=ab if cfg.incident else None)
            detector = rca_engine.ITScorer(cfg.base, "fitted").fit(norm[target].to_numpy())
            cache.clear()  # one normal period at a time: keeps memory flat
            cache[key] = (model, detector)
        return (*cache[key], ab)

    def run(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        try:
            model, detector, ab = model_for(graph, target, metric, normal, abnormal)
            rows = range(ROW, len(ab)) if cfg.search else [ROW]
            for i in rows:
                if i >= len(ab):
                    break
                x = float(ab[target].iloc[i])
                if cfg.threshold > 0 and float(detector.score(np.array([x]))[0]) < cfg.threshold:
                    continue
                expl = rca_engine.attribute(model, target=target, sample=ab.iloc[i], num_samples=cfg.num_samples,
                                            max_permutations=cfg.max_permutations, game=cfg.game, base=cfg.base)
                return [n for n in expl.root_causes if expl.contributions.get(n, 0.0) > 0]
            return []
        except rca_engine.RCAError as err:
            ENGINE_ERRORS.append(f"{cfg.mechanism_for(metric)}: {err}")
            return []

    return Method(run, error_count_view if cfg.errors else percent_view)


def default_api_method(preset: str | None = None, errors: bool = True, window: bool = False,
                       threshold: float | None = None) -> Method:
    """What a user does with the documented API, with no benchmark-specific engine option: fit on the normal data
    (``rca_engine.fit(graph, normal)``, or with ``preset=``), then either explain the whole incident window
    (``window``: ``rca_engine.attribute_window``, its outlier rows' contributions summed) or find the window's most
    unusual row of the target (``rca_engine.outlier_scores``) and explain it (``rca_engine.attribute``); every node
    ranked by its contribution. ``threshold``: attribute_window's ``threshold`` (None: the preset's). Benchmark-side
    data preparation only: nodes with too few measurements marginalised out and NaNs imputed (``prepare``, as every
    engine row), availability as failed-request counts (``errors``)."""
    import rca_engine

    cfg = EngineConfig()
    cache: dict[tuple, object] = {}

    def run(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        try:
            g, norm, ab = prepare(graph, target, normal, abnormal, cfg)
            key = (target, metric, normal.shape, normal.index[0], normal.index[-1], tuple(sorted(g.edges)))
            if key not in cache:
                cache.clear()
                cache[key] = rca_engine.fit(g, norm, preset=preset)
            model = cache[key]
            if window:
                return list(rca_engine.attribute_window(model, target, ab, threshold=threshold).root_causes)
            scores = rca_engine.outlier_scores(model, ab)[target]
            row = ab.iloc[int(np.argmax(scores.to_numpy()))]
            expl = rca_engine.attribute(model, target, row)
            return list(expl.root_causes)
        except rca_engine.RCAError as err:
            ENGINE_ERRORS.append(f"default API ({preset or 'defaults'}{', window' if window else ''}): {err}")
            return []

    return Method(run, error_count_view if errors else percent_view)


# ----------------------------------------------------------------------------------------------------------
# evaluation

def recall(scenario: Scenario, method: Method, metric: str, progress: tqdm | None = None) -> TopK:
    res = TopK((1, 3))
    assert scenario.normal is not None
    for issue in scenario.issues:
        if issue.target_metric != metric:
            continue
        normal = method.view(scenario.normal, metric, issue.statistic)
        abnormal = method.view(issue.metrics, metric, issue.statistic)
        ranking = method.rank(scenario.causal_graph, issue.target_node, metric, normal, abnormal)
        res.add(ranking, issue.root_cause)
        if progress is not None:
            progress.update(1)
    return res


def specificity(scenario: Scenario, method: Method, metric: str) -> float:
    assert scenario.normal is not None
    targets = {(i.target_node, i.statistic) for i in scenario.issues if i.target_metric == metric}
    n = len(scenario.normal)
    ok = []
    for target, stat in sorted(targets):
        frame = method.view(scenario.normal, metric, stat)
        for split in range(n // 2, n - 3, int(n * 0.1)):
            ok.append(len(method.rank(scenario.causal_graph, target, metric, frame.iloc[:split], frame.iloc[split:])) == 0)
    return float(np.mean(ok)) if ok else float("nan")


# Published / previously reported figures (top-1, top-3 recall; specificity) on this dataset.
# source keys are cited below the table.
PUBLISHED: dict[str, dict[tuple[str, str], tuple[float | None, float | None]]] = {
    # benchmark's own traversal baseline, output of code/RCA-Dataset-Eval.ipynb at commit 1c5992d [R]
    "traversal (published [R])": {
        ("low_traffic", "latency"): (0.571, 0.571), ("low_traffic", "availability"): (0.833, 1.000),
        ("high_traffic", "latency"): (0.571, 0.786), ("high_traffic", "availability"): (0.667, 1.000),
        ("temporal", "latency"): (1.000, 1.000), ("temporal", "availability"): (0.750, 1.000),
    },
    # DoWhy attribute_anomalies, paper configuration, reproduced with dowhy 0.14 (figures of issue 7) [D]
    "DoWhy attribute_anomalies, auto mechanisms [D]": {
        ("low_traffic", "latency"): (0.07, None), ("high_traffic", "latency"): (0.07, None),
        ("low_traffic", "availability"): (0.25, None), ("high_traffic", "availability"): (0.00, None),
    },
    "DoWhy attribute_anomalies, linear mechanisms [D]": {
        ("low_traffic", "latency"): (0.14, None), ("high_traffic", "latency"): (0.21, None),
        ("low_traffic", "availability"): (0.25, None), ("high_traffic", "availability"): (0.00, None),
    },
}
PUBLISHED_SPECIFICITY = {  # traversal, same notebook [R]
    ("low_traffic", "latency"): 0.167, ("low_traffic", "availability"): 1.0,
    ("high_traffic", "latency"): 0.333, ("high_traffic", "availability"): 1.0,
    ("temporal", "latency"): 0.600, ("temporal", "availability"): 1.0,
}
DEFAULT_ANALYSIS = """\
**The default API rows** are what a user of the library does, with no benchmark-specific engine option: fit on the
normal data with the documented `metrics` preset (one-sided scores, exponential noise tails, `additive` mechanisms,
`fit_on_sample`), then explain the incident window with `rca_engine.attribute_window(model, target, window)`: every
row of the window informs f (the method assumes a fault changes noise, never f), the rows whose target score reaches
3 nats (`Options.window_threshold`, rarer than 1 in 20; else the most unusual row) are explained and their
contributions summed (Shapley values are additive: the sum attributes those rows' total score). High traffic
(latency 1.000, availability 0.833 top-1) is at or above the best re-implemented baseline in every stratum (latency
0.571 / 0.643, availability 0.833 / 0.833). *How held-out that is*: with one row (`outlier_scores` -> the most
unusual row -> `attribute`, the explained row alone informing f) the preset gives 0.929 / 0.917 (low traffic) and
0.929 / 0.667 (high). For a window, the first design chosen on low traffic summed *every* row of the window
(threshold 0: 1.000 / 1.000 on low traffic); on high traffic it fell to 0.583 on availability (row below), a node
unusual in every row of the window without moving the target collecting the noise contributions of the normal rows.
Explaining only the window's outlier rows, the other design considered beforehand (1.000 / 0.917 on low traffic),
was then also run on high traffic; it is the API's default because explaining what is not an outlier has no
meaning in the method (a unit test shows the failure of summing every row on a constructed case), not because of
the high-traffic figure, but the choice between the two was made after both high-traffic figures were known, so
high traffic is not a clean held-out set for it (a third variant, f fitted on the whole window but only the most
unusual row explained, was measured the same way: 0.929 / 0.917 low, 1.000 / 0.833 high). The 3-nat threshold is the benchmark's existing decision threshold,
not tuned. Without a preset (`fit(graph, normal)`: DoWhy's two-sided score, empirical noise, `auto` mechanisms,
normal rows only) the engine fails here as DoWhy does. The default-API rows always rank (the paper's recall
protocol; a user decides from the outlier score whether there is anything to explain), so their specificity is 0 by
construction."""

ANALYSIS = """\
**Where we win, where we lose, and why** (low / high traffic; 12-14 issues per cell, so one issue moves a cell by
0.07-0.08). Default engine configuration: `additive` mechanisms (least squares shrunk toward the sum structure)
fitted on the normal data *and the issue's own 5-row window* (`rca_engine.fit(..., incident=...)`; noise
distributions from the normal data only), the one-sided `upper` base score, exponential noise tails, availability as
failed-request counts; an issue is attributed when PetSite's IT score against its normal data reaches 3 nats, else
we answer "no issue". The paper's protocol always asks for a ranking (the issue is known), so the "ranking only" row
is the like-for-like comparison for recall, and the default row for specificity.
*Summary*: ranking only, the engine names the culprit first in 0.929 / 1.000 of the latency issues and 1.000 / 0.833
of the availability issues, against 0.571 / 0.571 and 0.833 / 0.667 for the benchmark's traversal baseline and
0.429 / 0.643 and 0.750 / 0.833 for ranked correlation, the strongest of the paper's other baselines (a tie on
high-traffic availability top-1, ahead at top-3: 1.000 vs 0.917); every other re-implemented method and DoWhy in the
paper's configuration (0.07-0.25) are far behind. With the outlier decision, specificity is 0.83-1.00 where traversal
has 0.00-0.33.
*Why the incident's rows matter (latency: 0.286 / 0.571 -> 0.857 / 1.000)*: the method assumes a fault changes its
root cause's noise only, never a mechanism, so the rows of the incident are valid data for every f, and they are the
only data that shows how much of a callee's change reaches its caller. In the 589 normal rows the culprits hardly
move, and what moves is mostly unrelated to their callers (payforadoption on the status-updater gateway: coefficient
0.24 from normal rows, while the injected 0.3 s sleep passes through almost 1:1), so f fitted on normal rows reads the
caller's share as the caller's own noise (the DynamoDB overloads then blame PetSearch / petlistadoptions, the sleeps
payforadoption; DoWhy has the same failure). Ranked correlation and traversal use the window too, without a causal
model. Linear mechanisms gain the same on latency; `additive` is better on availability (below).
*Availability*: (a) *additive* (ablation rows use normal-only mechanisms where noted): the culprits failed 0 times
in every normal row, so least squares gives their errors coefficient 0; the pure `sum` structure lets every
callee's errors through, including the asynchronous step-function lambdas that fail all the time without PetSite
noticing (0.250 / 0.333); `additive` keeps coefficient 1 where the data never moved and learns ~0 for those lambdas
(with the incident rows: linear 0.833 / 0.583, additive 0.833 / 0.750). (b) *one-sided*: with the two-sided score
(0.583 / 0.667) a node failing *less* than usual (the lambdas in the April issue windows against the August normal
data) is as anomalous as the culprit, and coalitions that push PetSite's errors below normal count as "as extreme".
(c) *counts*: errors add up along calls as counts, not percentages (ranking only, high traffic: 0.833 vs 0.750 in
percent). With the 3-nat decision, issues whose PetSite errors rise by only 2-3 per 5 minutes are answered "no
issue" (0.833 / 0.750 top-1 instead of 1.000 / 0.833).
*Where we still lose*: at top-1 nowhere against a published or re-implemented baseline. The misses (ranking only):
one low-traffic DynamoDB overload (culprit 2nd, behind the load balancer in front of petlistadoptions) and two
high-traffic petlistadoptions error injections where it failed only 1-3 requests per 5 minutes (culprit 2nd and
3rd, behind the `servi-petsi` load balancer, which failed in every April issue window and never in the August
normal data).
Caveats: 26 issues per scenario, so differences of one issue are noise; the incident-row fitting was tried after
the misses of normal-only fitting were analysed (it follows from the method's own assumption and has no parameter);
our re-implemented traversal reproduces every published top-1/top-3 figure exactly, but its specificity on
availability (0.17 / 0.00) differs from the published 1.00 -- we could not find why (the published normal data may
differ from the copy here)."""


SOURCES = """\
Sources: [R] amazon-science/petshop-root-cause-analysis, `code/RCA-Dataset-Eval.ipynb` (stored outputs, commit
1c5992d), MAD-score traversal baseline, all 68 issues including the temporal scenarios (whose normal data we lack).
[D] DoWhy `gcm.attribute_anomalies` in the paper's `counterfactual_attribution.py` configuration, dowhy 0.14,
figures recorded in issue 7 of this project (top-1 only).
*Re-implemented, not quoted*: the paper (arXiv:2311.04806, Table 2) also reports ε-Diagnosis, RCD, CIRCA, random
walk and ranked correlation, and later work on the same data smooth traversal (Orchard, Okati et al., NeurIPS 2025)
and IDI; their per-cell figures could not be retrieved here (the only stored result files in the paper's repository
and in amazon-science/RCAWithMissingStructuralKnowledgeCode are the traversal outputs above), so no number of theirs
is quoted. Instead the rows marked "re-implemented" re-run each method as the paper's repository configures it
(`code/*.py` wrappers around salesforce/PyRCA analyzers with their default settings; smooth traversal from the
NeurIPS 2025 code's PetShop wrapper), written here from those descriptions (benchmarks/petshop_baselines.py, every
deviation in its docstrings; RCD's top-3 was also compared with PyRCA 1.0.1 itself with both programs' random
orders fixed: equal on all 52 issues and 24 specificity splits). These are reproductions of the configurations, not
checked against the paper's figures; RCD shuffles (seed 0 here; over seeds 0-9 low-traffic availability top-1 ranges
0.50-0.75, the other cells stay at or near 0). Not re-implemented: IDI (no description retrievable here)."""


DEFAULT_API = ("rca_engine default API, preset='metrics': fit(graph, normal, preset='metrics'); "
               "attribute_window(model, target, window)")
ONE_ROW_API = ("rca_engine default API, one row: fit(graph, normal, preset='metrics'); outlier_scores -> most unusual "
               "row; attribute(model, target, row)")
BEST = "whyslow engine: additive mechanisms fitted with the incident's rows, one-sided score, errors as counts"
BEST_CONFIG = EngineConfig(mechanisms="additive", base="upper", errors=True, tail_fraction=0.1, incident=True)
EARLIER = "whyslow engine, linear latency / sum availability (earlier default: two-sided, percent)"


def _methods(quick: bool) -> dict[str, Method]:
    methods: dict[str, Method] = {
        "traversal (ours, re-implemented)": Method(lambda g, t, m, n, a: traversal_method(n, a, g, t, search=True)),
        "traversal, row 2 only": Method(lambda g, t, m, n, a: traversal_method(n, a, g, t, search=False)),
    }
    from benchmarks.petshop_baselines import PUBLISHED_METHODS  # imports this module: not at the top

    methods.update({name: factory() for name, factory in PUBLISHED_METHODS.items()})
    try:
        import rca_engine
        if not hasattr(rca_engine, "fit"):
            raise ImportError("rca_engine.fit missing")
    except ImportError as err:
        print(f"rca_engine not usable ({err}); only the baselines run")
        return methods
    methods[DEFAULT_API] = default_api_method("metrics", window=True)
    methods[ONE_ROW_API] = default_api_method("metrics")
    methods["rca_engine default API, no preset: fit(graph, normal); attribute_window"] = default_api_method(
        None, window=True)
    best = BEST_CONFIG
    methods[BEST] = engine_method(best)
    methods["whyslow engine, same, ranking only (no outlier decision)"] = engine_method(replace(best, threshold=0.0))
    methods["whyslow engine, same, game='tail'"] = engine_method(replace(best, game="tail"))
    methods["whyslow engine, same, mechanisms fitted on normal data only"] = engine_method(replace(best, incident=False))
    methods["whyslow engine, same, two-sided score"] = engine_method(replace(best, base="median"))
    methods["whyslow engine, same, availability in percent"] = engine_method(replace(best, errors=False))
    methods["whyslow engine, same, linear mechanisms"] = engine_method(replace(best, mechanisms="linear"))
    methods[EARLIER] = engine_method(EngineConfig(mechanisms={"latency": "linear", "availability": "sum"}))
    methods["whyslow engine, linear"] = engine_method(EngineConfig(mechanisms="linear"))
    methods["whyslow engine, sum"] = engine_method(EngineConfig(mechanisms="sum"))
    if not quick:
        methods["whyslow engine, auto"] = engine_method(EngineConfig(mechanisms="auto"))
    return methods


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="low_traffic only, fewer variants")
    ap.add_argument("--no-specificity", action="store_true")
    args = ap.parse_args(argv)
    root = dataset_path("petshop")
    scen_names = ["low_traffic"] if args.quick else list(SCENARIOS)
    scenarios = [load_scenario(root, s) for s in scen_names]
    runnable = [s for s in scenarios if s.normal is not None]
    missing = [s.name for s in scenarios if s.normal is None]
    methods = _methods(args.quick)
    cells = [(s.name, m) for s in runnable for m in ("latency", "availability")]
    results: dict[str, dict[tuple[str, str], TopK]] = {}
    spec: dict[str, dict[tuple[str, str], float]] = {}
    timings: dict[str, float] = {}
    total = sum(1 for s in runnable for i in s.issues) * len(methods)
    with tqdm(total=total, desc="petshop", unit="issue") as bar:
        for name, method in methods.items():
            t0 = time.perf_counter()
            results[name] = {}
            spec[name] = {}
            for s in runnable:
                for metric in ("latency", "availability"):
                    results[name][(s.name, metric)] = recall(s, method, metric, bar)
                    if not args.no_specificity:
                        spec[name][(s.name, metric)] = specificity(s, method, metric)
            timings[name] = time.perf_counter() - t0
    header = ["method"] + [f"{s.replace('_traffic', '')} {m[:4]} top1/top3" for s, m in cells]
    rows = []
    for name in methods:
        rows.append([name] + [f"{results[name][c].cell(1)} / {results[name][c].cell(3)}" for c in cells])
    for name, figs in PUBLISHED.items():
        row = [name]
        for c in cells:
            v = figs.get(c)
            row.append("n/a" if v is None else f"{v[0]:.3f} / " + ("n/a" if v[1] is None else f"{v[1]:.3f}"))
        rows.append(row)
    body = [
        "Top-k recall per scenario x target metric (issues per cell: "
        + ", ".join(f"{c[0]} {c[1]}: {results[next(iter(methods))][c].n}" for c in cells) + ").",
        "",
        markdown_table(header, rows),
        "",
    ]
    if not args.no_specificity:
        sh = ["method"] + [f"{s.replace('_traffic', '')} {m[:4]}" for s, m in cells]
        srows = [[n] + [f"{spec[n][c]:.3f}" for c in cells] for n in methods]
        srows.append(["traversal (published [R])"] + [f"{PUBLISHED_SPECIFICITY.get(c, float('nan')):.3f}" for c in cells])
        body += ["Specificity on normal data (fraction of the 6 normal splits per target with no root cause named):",
                 "", markdown_table(sh, srows), ""]
    body += ["Run time per method (all cells, incl. specificity): "
             + ", ".join(f"{n}: {t:.1f} s" for n, t in timings.items()), ""]
    if ENGINE_ERRORS:
        body += [f"Engine errors ({len(ENGINE_ERRORS)}, each counted as a miss), first: {ENGINE_ERRORS[0]}", ""]
    if missing:
        temporal = PUBLISHED["traversal (published [R])"]
        body += [f"Not run: {', '.join(missing)} — their normal-operation files are missing from our copy of the "
                 "dataset (see its README). For reference, the published traversal figures on the temporal "
                 "scenarios (top-1 / top-3): latency "
                 + " / ".join(f"{v:.3f}" for v in temporal[("temporal", "latency")])
                 + ", availability " + " / ".join(f"{v:.3f}" for v in temporal[("temporal", "availability")])
                 + f"; specificity {PUBLISHED_SPECIFICITY[('temporal', 'latency')]:.3f} / "
                 + f"{PUBLISHED_SPECIFICITY[('temporal', 'availability')]:.3f}.", ""]
    body += [DEFAULT_ANALYSIS, "", ANALYSIS, "", SOURCES]
    write_result("petshop", "PetShop (Hardt et al. 2024): top-k recall and specificity",
                 command_line("benchmarks.petshop", argv), "\n".join(body))
    floor = {}
    for name in methods:
        if name == BEST:
            for (s, m), r in results[name].items():
                floor[f"{s}/{m}/top1"] = r.recall(1)
                floor[f"{s}/{m}/top3"] = r.recall(3)
    if floor and not args.quick:
        update_floor("petshop_engine", floor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
