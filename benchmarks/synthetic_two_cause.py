"""Two-cause outliers on call graphs with parallel (max) callers: the engine's default API next to DoWhy.

Random call graphs (benchmarks.synthetic_data) where half or all callers call in parallel (latency = own time +
the slowest callee), two services slowed at once by 3 sd of the entry latency. A case counts only where both slowed
services really made the request an outlier: the entry's IT score against normal data is at least 3 nats and
removing either service's delay (the same own times otherwise) lowers the entry latency by at least a quarter of
that delay (a delay off the critical path of a parallel call changes nothing, and no method should be asked to
name it). Top-2: both causes are the two first-ranked nodes. Methods: ``rca_engine.fit(graph, normal)`` with its
defaults (``auto`` mechanisms) then ``rca_engine.attribute(model, target, row)``; the same with
``preset="latency"``; the true sum/max structure (what ``whyslow serve`` fits from traces); DoWhy 0.14
``gcm.attribute_anomalies`` with ``auto.assign_causal_mechanisms`` (its notebook configuration) where installed.

Seeds: ``--seed`` (11) is the seed whose misses were analysed when ``auto`` was changed; ``--heldout-seeds`` are
20-node graphs (2 per seed) looked at only to check. DoWhy takes ~35 s of CPU per 20-node case (more on a shared
machine), so its rankings can be recorded once (``--record-dowhy FILE``: DoWhy only, the first ``--dowhy-cases``
cases per graph) and read back (``--dowhy-rankings FILE``): the cases are generated identically from the seeds.

    .venv/bin/python -m benchmarks.synthetic_two_cause [--quick] [--worlds N] [--cases N] [--no-dowhy]
        [--heldout-seeds 12,13,14,15] [--dowhy-rankings FILE | --record-dowhy FILE]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

import rca_engine
from benchmarks.common import command_line, markdown_table, rank_by_score, update_floor, write_result
from benchmarks.synthetic_data import Setting, World, make_world, sample

SETTINGS = [
    Setting("10 nodes, half parallel, two causes", n_nodes=10, parallel=0.5, n_causes=2),
    Setting("10 nodes, all parallel, two causes", n_nodes=10, parallel=1.0, n_causes=2),
    Setting("20 nodes, half parallel, two causes", n_nodes=20, parallel=0.5, n_causes=2),
]
OUTLIER_NATS = 3.0
ON_PATH = 0.25  # removing a cause's delay must lower the entry latency by this share of the delay
DOWHY = "DoWhy 0.14 attribute_anomalies, auto mechanisms"
DOWHY_SETTINGS = {"10 nodes, half parallel, two causes", "10 nodes, all parallel, two causes"}  # run live
HELDOUT_SETTING = SETTINGS[2]  # the setting of the held-out seeds
HELDOUT_WORLDS = 2  # graphs per held-out seed

# (world, normal latencies, faulty latencies) -> ranked nodes
Method = Callable[[World, pd.DataFrame, pd.Series], list[str]]


def latencies(w: World, own: pd.Series) -> pd.Series:
    """Node latencies of one request from its own times (the world's sum / max structure)."""
    lat: dict[str, float] = {}
    for v in w.order:
        callees = [lat[c] for c in w.call_graph.successors(v)]
        calls = (max(callees) if w.structure[v] == "max" else sum(callees)) if callees else 0.0
        lat[v] = float(own[v]) + calls
    return pd.Series(lat)


def two_cause_cases(w: World, normal: pd.DataFrame, n: int, magnitude: float, rng: np.random.Generator,
                    detector: rca_engine.ITScorer, max_tries: int = 40) -> list[tuple[list[str], pd.Series]]:
    """Up to ``n`` faulty requests whose two slowed services both made the request an outlier."""
    delta = magnitude * float(normal[w.target].std())
    nodes = list(w.call_graph.nodes)
    out: list[tuple[list[str], pd.Series]] = []
    for _ in range(n * max_tries):
        if len(out) == n:
            break
        causes = [str(c) for c in rng.choice(nodes, size=2, replace=False)]
        _, own = sample(w, 1, rng)
        own = own.iloc[0] + pd.Series({c: delta for c in causes}).reindex(own.columns, fill_value=0.0)
        lat = latencies(w, own)
        if float(detector.score(np.array([lat[w.target]]))[0]) < OUTLIER_NATS:
            continue
        drops = [lat[w.target] - latencies(w, own - pd.Series({c: delta}).reindex(own.index, fill_value=0.0))[w.target]
                 for c in causes]
        if min(drops) >= ON_PATH * delta:
            out.append((causes, lat))
    return out


class EngineMethod:
    """The engine's documented API; the model is fitted once per world."""

    def __init__(self, preset: str | None = None, structure: bool = False) -> None:
        self.preset, self.structure = preset, structure
        self._key: int | None = None
        self._model: rca_engine.CausalModel | None = None

    def __call__(self, w: World, normal: pd.DataFrame, row: pd.Series) -> list[str]:
        if self._key != id(normal):
            mech = dict(w.structure) if self.structure else None
            self._model = rca_engine.fit(w.causal_graph, normal, mech, preset=self.preset)
            self._key = id(normal)
        assert self._model is not None
        return list(rca_engine.attribute(self._model, w.target, row).root_causes)

    def chosen(self) -> dict[str, int]:
        names = list(self._model.mechanism_names().values()) if self._model is not None else []
        return {n: names.count(n) for n in sorted(set(names)) if n != "empirical"}


class DowhyMethod:
    """DoWhy 0.14: invertible SCM, ``auto.assign_causal_mechanisms``, ``attribute_anomalies`` (notebook setup)."""

    def __init__(self) -> None:
        self._key: int | None = None
        self._scm = None

    def __call__(self, w: World, normal: pd.DataFrame, row: pd.Series) -> list[str]:
        from dowhy import gcm

        gcm.config.disable_progress_bars()
        gcm.config.set_default_n_jobs(1)  # in process (its CPU time is then measured)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self._key != id(normal):
                scm = gcm.InvertibleStructuralCausalModel(w.causal_graph)
                gcm.auto.assign_causal_mechanisms(scm, normal)
                gcm.fit(scm, normal)
                self._scm, self._key = scm, id(normal)
            contrib = gcm.attribute_anomalies(self._scm, target_node=w.target, anomaly_samples=row.to_frame().T)
        return rank_by_score({k: float(v[0]) for k, v in contrib.items()})


def dowhy_available() -> bool:
    try:
        import dowhy  # noqa: F401
    except ImportError:
        return False
    return True


def graphs(s: Setting, seed: int, n_worlds: int, n_cases: int
           ) -> Iterator[tuple[int, World, pd.DataFrame, list[tuple[list[str], pd.Series]]]]:
    """(index, world, normal latencies, two-cause cases) of a setting's graphs, generated from ``seed``."""
    rng = np.random.default_rng(seed * 1_000_003 + zlib.crc32(s.name.encode()))
    for wi in range(n_worlds):
        w = make_world(s, rng)
        normal, _ = sample(w, s.n_train, rng)
        detector = rca_engine.ITScorer("upper", "fitted").fit(normal[w.target].to_numpy())
        yield wi, w, normal, two_cause_cases(w, normal, n_cases, s.magnitude, rng, detector)


def case_key(s: Setting, seed: int, world: int, case: int) -> str:
    return f"{s.name}|{seed}|{world}|{case}"


def record_dowhy(path: str, plan: list[tuple[Setting, int, int]], n_cases: int, per_graph: int) -> None:
    """Run DoWhy on the first ``per_graph`` cases of every graph of ``plan`` (setting, seed, graphs) and write its
    rankings to ``path`` (JSON, kept between runs: cases already there are not run again)."""
    try:
        with open(path) as f:
            out = json.load(f)
    except FileNotFoundError:
        out = {}
    for s, seed, n_worlds in plan:
        for wi, w, normal, cases in graphs(s, seed, n_worlds, n_cases):
            todo = [ci for ci in range(min(per_graph, len(cases))) if case_key(s, seed, wi, ci) not in out]
            method = DowhyMethod()
            for ci in todo:
                causes, lat = cases[ci]
                t = time.process_time()
                ranking = method(w, normal, lat)
                out[case_key(s, seed, wi, ci)] = {"causes": causes, "ranking": ranking,
                                                  "cpu_s": round(time.process_time() - t, 2)}
                with open(path, "w") as f:
                    json.dump(out, f, indent=1, sort_keys=True)
                print(case_key(s, seed, wi, ci), causes, ranking[:3], flush=True)


class Tally:
    """Top-1 / top-2 counts of the methods over a row's cases, and over the cases DoWhy ranked."""

    def __init__(self, methods: Sequence[str]) -> None:
        self.hits = {m: [0, 0] for m in methods}
        self.sub = {m: [0, 0] for m in methods}
        self.n = self.n_sub = 0
        self.dowhy_ranked = 0  # cases with a recorded DoWhy ranking

    def cell(self, m: str, sub: bool = False) -> str:
        h, n = (self.sub[m], self.n_sub) if sub else (self.hits[m], self.n)
        if not n:
            return "n/a"
        return f"{h[0]}/{n} / {h[1]}/{n}" if sub else f"{h[0] / n:.2f} / {h[1] / n:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first setting only, 2 graphs x 4 cases, no DoWhy")
    ap.add_argument("--worlds", type=int, default=None)
    ap.add_argument("--cases", type=int, default=None)
    ap.add_argument("--no-dowhy", action="store_true")
    ap.add_argument("--dowhy-cases", type=int, default=3, help="cases per graph given to DoWhy")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--heldout-seeds", default="", help="comma-separated seeds of held-out 20-node graphs")
    ap.add_argument("--dowhy-rankings", default=None, help="DoWhy rankings recorded with --record-dowhy")
    ap.add_argument("--record-dowhy", default=None, help="only run DoWhy (20-node graphs first), write its rankings")
    args = ap.parse_args(argv)
    settings = SETTINGS[:1] if args.quick else SETTINGS
    n_worlds = args.worlds or (2 if args.quick else 3)
    n_cases = args.cases or (4 if args.quick else 5)
    heldout = [int(x) for x in args.heldout_seeds.split(",") if x.strip()]
    if args.record_dowhy:
        record_plan = ([(HELDOUT_SETTING, args.seed, n_worlds)] + [(HELDOUT_SETTING, sd, HELDOUT_WORLDS) for sd in heldout]
                + [(s, args.seed, n_worlds) for s in settings if s is not HELDOUT_SETTING])
        record_dowhy(args.record_dowhy, record_plan, n_cases, args.dowhy_cases)
        return 0
    recorded: dict[str, Any] = {}
    if args.dowhy_rankings:
        with open(args.dowhy_rankings) as f:
            recorded = json.load(f)
    with_dowhy = not args.quick and not args.no_dowhy and dowhy_available()
    names = ["rca_engine defaults: fit(graph, normal); attribute(model, target, row)",
             "rca_engine preset='latency'", "rca_engine, true sum/max structure (what serve fits)"]
    plan = [(s, args.seed, n_worlds, s.name) for s in settings]
    if heldout and not args.quick:
        plan.append((HELDOUT_SETTING, -1, HELDOUT_WORLDS,
                     f"{HELDOUT_SETTING.name}, held-out seeds {args.heldout_seeds}"))
    rows, floor, chosen_all = [], {}, {}
    timing: dict[str, list[float]] = {}
    dowhy_cpu: list[float] = []
    with tqdm(total=sum(w * (len(heldout) if sd < 0 else 1) for _, sd, w, _ in plan), desc="two-cause",
              unit="graph") as bar:
        for s, seed, worlds_per_seed, label in plan:
            live = with_dowhy and not recorded and s.name in DOWHY_SETTINGS
            tally = Tally([*names, DOWHY])
            for sd in (heldout if seed < 0 else [seed]):
                for wi, w, normal, cases in graphs(s, sd, worlds_per_seed, n_cases):
                    # the cases DoWhy ranks (live: the first --dowhy-cases; recorded: those with a recording)
                    recs = {i: recorded.get(case_key(s, sd, wi, i)) for i in range(min(len(cases), args.dowhy_cases))}
                    if live:
                        dowhy_idx = set(recs)
                    else:
                        recs = {i: r for i, r in recs.items() if r is not None and r["causes"] == cases[i][0]}
                        dowhy_idx = set(recs)
                    methods: dict[str, Method] = {names[0]: EngineMethod(), names[1]: EngineMethod("latency"),
                                                  names[2]: EngineMethod(structure=True)}
                    if live:
                        methods[DOWHY] = DowhyMethod()
                    for name, method in methods.items():
                        for i, (causes, lat) in enumerate(cases):
                            if name == DOWHY and i not in dowhy_idx:
                                continue
                            t = time.process_time()
                            ranking = method(w, normal, lat)
                            timing.setdefault(name, []).append(time.process_time() - t)
                            _count(tally, name, ranking, causes, i in dowhy_idx)
                        if isinstance(method, EngineMethod) and name == names[0]:
                            for k, v in method.chosen().items():
                                chosen_all[k] = chosen_all.get(k, 0) + v
                    if not live:
                        for i, rec in recs.items():
                            _count(tally, DOWHY, list(rec["ranking"]), cases[i][0], True)
                            dowhy_cpu.append(float(rec["cpu_s"]))
                    tally.dowhy_ranked += len(dowhy_idx)
                    tally.n += len(cases)
                    tally.n_sub += len(dowhy_idx)
                    bar.update(1)
            rows.append([label, str(tally.n)] + [tally.cell(m) for m in names] + ["n/a"])
            if tally.dowhy_ranked:
                which = (f"the first {args.dowhy_cases} cases per graph" if live
                         else f"the {tally.n_sub} cases with a recorded DoWhy ranking")
                rows.append([f"{label}: {which} (DoWhy's)", str(tally.n_sub)]
                            + [tally.cell(m, sub=True) for m in [*names, DOWHY]])
            for m in names:
                if tally.n:
                    floor[f"{label}/{m}/top2"] = tally.hits[m][1] / tally.n
    if recorded:
        dowhy_note = (f"DoWhy's rankings were read from `{args.dowhy_rankings}` (recorded with `--record-dowhy` on the "
                      "same cases; a row without them has none).")
    elif with_dowhy:
        dowhy_note = "DoWhy was run live on the 10-node settings."
    else:
        dowhy_note = "DoWhy was not run (not installed, --quick or --no-dowhy)."
    if dowhy_cpu:
        timing.setdefault(f"{DOWHY} (20 nodes, recorded)", []).extend(dowhy_cpu)
    body = "\n".join([
        f"{n_worlds} random graphs per setting, up to {n_cases} two-cause outliers each (seed {args.seed})"
        + (f", and {HELDOUT_WORLDS} 20-node graphs for each held-out seed ({args.heldout_seeds})" if heldout else "")
        + ", 1,000 normal requests per graph; a case counts only where both slowed services made the request an outlier "
        f"(entry IT score >= {OUTLIER_NATS:g} nats, each cause's delay on the critical path). Cells: top-1 (a cause "
        "ranked first) / top-2 (both causes are the two first). " + dowhy_note,
        "",
        markdown_table(["setting", "cases", *[f"{m} top1 / top2" for m in names], f"{DOWHY} top1 / top2"], rows),
        "",
        ANALYSIS,
        "",
        "Mechanisms `auto` chose (non-root nodes, all graphs): "
        + ", ".join(f"{k}: {v}" for k, v in chosen_all.items()) + ".",
        "",
        "CPU time per case (fit amortised over a graph's cases): "
        + ", ".join(f"{m}: {1000 * float(np.mean(t)):.0f} ms" for m, t in timing.items()) + ".",
    ])
    write_result("synthetic_two_cause", "Two-cause outliers with parallel callers: default API vs. DoWhy",
                 command_line("benchmarks.synthetic_two_cause", argv), body)
    if floor and not args.quick:
        update_floor("synthetic_two_cause", floor)
    print(body)
    return 0


def _count(tally: Tally, name: str, ranking: list[str], causes: list[str], dowhy_case: bool) -> None:
    top1, top2 = ranking[0] in causes, set(ranking[:2]) == set(causes)
    if name != DOWHY:
        tally.hits[name][0] += top1
        tally.hits[name][1] += top2
    if dowhy_case:
        tally.sub[name][0] += top1
        tally.sub[name][1] += top2


ANALYSIS = """\
**Reading.** Seed 11 is where the defaults' misses were analysed; the held-out seeds were only run to check. Before
the change `fit(graph, normal)` got 0.73 / 0.60 (top-1 / top-2) on the seed-11 20-node graphs and 0.90 / 0.82 on
the held-out ones. Its misses were parallel callers that `auto` fitted with a line: (a) a 20 % hold-out of 1,000
rows was too small for the paired test to show the maximum's gain (carried by the few rows where a usually faster
callee is the slowest; e.g. the entry of one graph: 28 % lower held-out error, 2.3 standard errors on one split,
below 2 on another) -- the comparison is now 5-fold cross-validated, every row held out once; (b) callers whose
slowest callee is nearly always the same one, so no held-out error can tell a line from the maximum, and a fault
that makes another callee the slowest goes into the caller's own noise in the line -- `auto` now starts from
`maxlinear` where the rows show overlapping calls (at or above the largest parent in >= 99 % of rows, below the
sum of the parents in > 1 %: `rca_engine.mechanisms.parallel_callers`), and `maxlinear` keeps the parallel
structure where the rows cannot separate the maximum from that callee. Neither is specific to these graphs: (a) is
the test's power, (b) is what a latency can and cannot be. Remaining held-out misses rank a caller whose rows gave
no sign of overlap first or second; the true sum/max structure (what `whyslow serve` fits from traces) stays the
best."""


if __name__ == "__main__":
    raise SystemExit(main())
