"""Synthetic suite: top-1/top-3 of the injected node(s) under controlled difficulty.

Methods: our engine with the true sum/max structure mechanisms and with ``auto``; DoWhy's
``gcm.attribute_anomalies`` (invertible SCM, auto-assigned mechanisms; slow, so on a small subset); the
largest own-time z-score (own times as a trace shows them); and traversal (anomalous nodes, by MAD score of
node latency, with no anomalous cause). Two causes: top-1 counts when the first-ranked node is one of them,
top-3 when both are in the top 3.
"""

from __future__ import annotations

import argparse
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

import rca_engine
from benchmarks.baselines import MadScorer, traversal
from benchmarks.common import command_line, markdown_table, rank_by_score, update_floor, write_result
from benchmarks.synthetic_data import Case, Setting, World, make_cases, make_world, sample

LATENCY = rca_engine.preset("latency")  # the engine settings whyslow serve fits with

SETTINGS = [
    Setting("5 nodes", n_nodes=5),
    Setting("10 nodes", n_nodes=10),
    Setting("20 nodes", n_nodes=20),
    Setting("50 nodes", n_nodes=50),
    Setting("20 nodes, small fault (1 sd)", magnitude=1.0),
    Setting("20 nodes, large fault (5 sd)", magnitude=5.0),
    Setting("20 nodes, all parallel (max)", parallel=1.0),
    Setting("20 nodes, half parallel", parallel=0.5),
    Setting("20 nodes, cache-like callers (30% hits)", cache_hit=0.3, cache_frac=0.3),
    Setting("20 nodes, two simultaneous causes", n_causes=2),
    Setting("20 nodes, 100 training traces", n_train=100),
    Setting("20 nodes, 30 training traces", n_train=30),
]
DOWHY = "DoWhy attribute_anomalies (auto)"
DOWHY_SETTINGS = ("5 nodes", "10 nodes", "20 nodes")  # DoWhy takes ~1 min per case on 20 nodes here
QUICK = ["5 nodes", "20 nodes", "20 nodes, all parallel (max)", "20 nodes, two simultaneous causes",
         "20 nodes, 30 training traces"]

# A method: (world, normal latencies, normal own times, case) -> ranked nodes
Method = Callable[[World, pd.DataFrame, pd.DataFrame, Case], list[str]]


ANALYSIS = """\
**Reading the synthetic suite** (small samples: 10 cases per setting in the committed run; `make bench` runs
5 graphs x 20 cases; the engine rows use the settings `whyslow serve` uses: one-sided score, exponential noise
tails). On the cases a user asks about -- the request itself is an outlier -- the engine with the true sum/max
structure names the injected node first as often as the largest own-time z-score on every setting, and more often
with 30 training traces (1.00 vs 0.90); DoWhy's attribute_anomalies agrees on its few cases at ~20 s per case
against ~35 ms. Over *all* injected cases the engine now also matches the z-score on small faults (1 sd) and
cache-like callers (1.00 each; with the earlier two-sided score 0.40 and 0.20: an unusually *fast* coalition counted
as reproducing the outlier, which smeared the attribution when the request was hardly slow). It still trails on
all-parallel calls (0.50 vs 0.90): most injected delays there are off the critical path, so the request is not slow
and its attribution rightly does not single out the delayed node, while a per-node z-score names it regardless of
whether it mattered. With two simultaneous causes the engine puts both in its top 3 every time (traversal: 0.60).
Auto-selected mechanisms are close to the structure mechanisms at ~30x the time, and worse on parallel calls
(max is not linear); the structure is free when the collector supplies it. Traversal (MAD > 5 on node latencies)
mostly answers nothing: a 3 sd entry delay is under 5 MADs."""


def zscore_method(w: World, normal: pd.DataFrame, normal_own: pd.DataFrame, case: Case) -> list[str]:
    mu, sd = normal_own.mean(), normal_own.std().replace(0, np.nan)
    z = ((case.own - mu) / sd).fillna(0.0)
    return rank_by_score(z.to_dict())


def traversal_method(w: World, normal: pd.DataFrame, normal_own: pd.DataFrame, case: Case) -> list[str]:
    scorer = MadScorer().fit(normal)
    row = case.latencies.to_frame().T
    flags, scores = scorer.anomalous(row).iloc[0], scorer.score(row).iloc[0]
    anomalous = {c: float(scores[c]) for c in row.columns if flags[c]}
    return traversal(w.causal_graph, w.target, anomalous)


class EngineMethod:
    """Our engine with the settings ``whyslow serve`` uses; the model is fitted once per world and reused."""

    def __init__(self, mechanisms: str):
        self.mechanisms = mechanisms
        self._key: int | None = None
        self._model = None

    def __call__(self, w: World, normal: pd.DataFrame, normal_own: pd.DataFrame, case: Case) -> list[str]:
        import rca_engine

        if self._key != id(normal):
            mech = dict(w.structure) if self.mechanisms == "structure" else self.mechanisms
            self._model = rca_engine.fit(w.causal_graph, normal, mechanisms=mech, options=LATENCY)
            self._key = id(normal)
        expl = rca_engine.attribute(self._model, target=w.target, sample=case.latencies, num_samples=1000,
                                    max_permutations=64)
        return list(expl.root_causes)


class DowhyMethod:
    """DoWhy 0.14 ``gcm.attribute_anomalies`` with an invertible SCM and auto-assigned mechanisms."""

    def __init__(self):
        self._key: int | None = None
        self._scm = None

    def __call__(self, w: World, normal: pd.DataFrame, normal_own: pd.DataFrame, case: Case) -> list[str]:
        from dowhy import gcm

        gcm.config.disable_progress_bars()
        if self._key != id(normal):
            scm = gcm.InvertibleStructuralCausalModel(w.causal_graph)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gcm.auto.assign_causal_mechanisms(scm, normal)
                gcm.fit(scm, normal)
            self._scm, self._key = scm, id(normal)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            contrib = gcm.attribute_anomalies(self._scm, target_node=w.target,
                                              anomaly_samples=case.latencies.to_frame().T)
        return rank_by_score({k: float(v[0]) for k, v in contrib.items()})


def setting_seed(s: Setting, seed: int) -> int:
    """Seed of a setting's random graphs: the same whichever subset of settings runs."""
    return seed * 1_000_003 + zlib.crc32(s.name.encode())


def hit(ranking: list[str], causes: list[str], k: int) -> bool:
    if len(causes) == 1 or k == 1:
        return bool(ranking[:k]) and any(c in ranking[:k] for c in causes)
    return all(c in ranking[:k] for c in causes)


OUTLIER_NATS = 3.0  # a case counts as "the request is an outlier" above this IT score of the entry latency


@dataclass
class SettingResult:
    """Hits of one method in one setting: all cases, and the cases whose entry latency is an outlier."""

    top1: int = 0
    top3: int = 0
    n: int = 0
    seconds: float = 0.0
    top1_outlier: int = 0
    n_outlier: int = 0


def run_setting(s: Setting, methods: dict[str, Method], n_worlds: int, n_cases: int, seed: int,
                bar: tqdm | None = None, limits: dict[str, int] | None = None) -> dict[str, SettingResult]:
    """Hits per method. A delay off the critical path (parallel calls) need not slow the request: the
    "outlier" counts keep only cases whose entry latency has an IT score >= OUTLIER_NATS against normal data."""
    import rca_engine

    out = {m: SettingResult() for m in methods}
    rng = np.random.default_rng(seed)
    for _ in range(n_worlds):
        w = make_world(s, rng)
        normal, normal_own = sample(w, s.n_train, rng)
        cases = make_cases(w, s, normal, n_cases, rng)
        detector = rca_engine.ITScorer(LATENCY.base, LATENCY.tail).fit(normal[w.target].to_numpy())
        is_outlier = detector.score(np.array([c.latencies[w.target] for c in cases])) >= OUTLIER_NATS
        for name, method in methods.items():
            limit = (limits or {}).get(name, len(cases))
            for case, outlier in zip(cases[:limit], is_outlier[:limit], strict=True):
                t0 = time.perf_counter()
                ranking = method(w, normal, normal_own, case)
                r = out[name]
                r.seconds += time.perf_counter() - t0
                r.top1 += hit(ranking, case.causes, 1)
                r.top3 += hit(ranking, case.causes, 3)
                r.n += 1
                if outlier:
                    r.top1_outlier += hit(ranking, case.causes, 1)
                    r.n_outlier += 1
                if bar is not None:
                    bar.update(1)
    return out


def build_methods(with_engine: bool, with_dowhy: bool) -> dict[str, Method]:
    methods: dict[str, Method] = {
        "largest own-time z-score": zscore_method,
        "traversal (MAD > 5)": traversal_method,
    }
    if with_engine:
        methods["whyslow engine, sum/max structure"] = EngineMethod("structure")
        methods["whyslow engine, auto"] = EngineMethod("auto")
    if with_dowhy:
        methods[DOWHY] = DowhyMethod()
    return methods


def engine_available() -> bool:
    try:
        import rca_engine
    except ImportError:
        return False
    return hasattr(rca_engine, "fit") and hasattr(rca_engine, "attribute")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 settings, fewer cases, no DoWhy")
    ap.add_argument("--worlds", type=int, default=None, help="random graphs per setting")
    ap.add_argument("--cases", type=int, default=None, help="faulty traces per graph")
    ap.add_argument("--dowhy-cases", type=int, default=2, help="cases per graph given to DoWhy (slow)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    settings = [s for s in SETTINGS if not args.quick or s.name in QUICK]
    n_worlds = args.worlds or (3 if args.quick else 5)
    n_cases = args.cases or (10 if args.quick else 20)
    eng = engine_available()
    methods = build_methods(eng, with_dowhy=not args.quick)
    limits = {DOWHY: args.dowhy_cases}
    total = sum(n_worlds * min(n_cases, (limits if s.name in DOWHY_SETTINGS else {DOWHY: 0}).get(m, n_cases))
                for m in methods for s in settings)
    results = {}
    with tqdm(total=total, desc="synthetic", unit="case") as bar:
        for s in settings:
            lim = dict(limits) if s.name in DOWHY_SETTINGS else {DOWHY: 0}
            results[s.name] = run_setting(s, methods, n_worlds, n_cases, setting_seed(s, args.seed), bar, lim)
    header = ["setting"] + [f"{m} top1 / top3" for m in methods]
    rows = []
    for s in settings:
        r = results[s.name]
        rows.append([s.name] + [f"{x.top1 / x.n:.2f} / {x.top3 / x.n:.2f} (n={x.n})" if x.n else "n/a"
                                for x in r.values()])
    orows = []
    for s in settings:
        r = results[s.name]
        orows.append([s.name] + [f"{x.top1_outlier / x.n_outlier:.2f} (n={x.n_outlier})" if x.n_outlier else "n/a"
                                 for x in r.values()])
    timing = {m: sum(results[s.name][m].seconds for s in settings) / max(1, sum(results[s.name][m].n for s in settings))
              for m in methods}
    body = "\n".join([
        f"{n_worlds} random graphs per setting, {n_cases} faulty traces per graph (DoWhy: first "
        f"{args.dowhy_cases} per graph, settings {', '.join(DOWHY_SETTINGS)} only), seed {args.seed}. Default: 20 nodes, sequential calls, fault = 3 sd of the "
        "entry latency added to one node's own time, 1000 training traces, 10% shared callees.",
        "",
        markdown_table(header, rows),
        "",
        f"Top-1 on the cases where the request itself is an outlier (entry IT score >= {OUTLIER_NATS:g} nats against "
        "its normal data) — the cases a user asks about:",
        "",
        markdown_table(["setting"] + [f"{m} top1" for m in methods], orows),
        "",
        ANALYSIS,
        "",
        "Mean time per case (fit amortised over a graph's cases): "
        + ", ".join(f"{m}: {t * 1000:.1f} ms" for m, t in timing.items()),
        "" if eng else "\nThe engine was not available when this ran; only the baselines are shown.",
    ])
    write_result("synthetic", "Synthetic suite: known root causes, controlled difficulty",
                 command_line("benchmarks.synthetic", argv), body)
    if eng:
        floor = {}
        for s in settings:
            for m, x in results[s.name].items():
                if x.n and m.startswith("whyslow"):
                    floor[f"{s.name}/{m}/top1"] = x.top1 / x.n
        if floor:
            update_floor("synthetic", floor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
