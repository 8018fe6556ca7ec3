"""Loader of the PetShop RCA dataset (Hardt et al., CLeaR 2024; data CC-BY-4.0) in ../shared/datasets/petshop."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pandas as pd

SCENARIOS = ("low_traffic", "high_traffic", "temporal_traffic1", "temporal_traffic2")


@dataclass
class Issue:
    """One injected issue: its 5-row abnormal window and its ground truth."""

    name: str  # e.g. "test/issue_3"
    metrics: pd.DataFrame  # 3-level columns (node, metric, statistic)
    target_node: str
    target_metric: str  # "latency" | "availability"
    statistic: str  # "Average"
    root_cause: str


@dataclass
class Scenario:
    name: str
    call_graph: nx.DiGraph  # caller -> callee
    normal: pd.DataFrame | None  # None when the normal-operation file is missing (temporal scenarios)
    issues: list[Issue]

    @property
    def causal_graph(self) -> nx.DiGraph:
        """Inverted call graph: callee latency causes caller latency."""
        return self.call_graph.reverse(copy=True)


def _read_metrics(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, header=[0, 1, 2], index_col=0)


def load_scenario(root: Path, name: str) -> Scenario:
    base = root / name
    graph = nx.from_pandas_adjacency(pd.read_csv(base / "graph.csv", index_col=0), create_using=nx.DiGraph)
    normal_path = base / "noissue" / "metrics.csv"
    normal = _read_metrics(normal_path) if normal_path.exists() else None
    issues: list[Issue] = []
    for split in ("train", "test"):
        split_dir = base / split
        if not split_dir.is_dir():
            continue
        dirs = sorted((d for d in split_dir.iterdir() if d.is_dir()), key=lambda d: int(d.name.split("_")[-1]))
        for d in dirs:
            target = json.loads((d / "target.json").read_text())
            issues.append(Issue(
                name=f"{split}/{d.name}",
                metrics=_read_metrics(d / "metrics.csv"),
                target_node=target["target"]["node"],
                target_metric=target["target"]["metric"],
                statistic=target["target"]["agg"],
                root_cause=target["root_cause"]["node"],
            ))
    return Scenario(name, graph, normal, issues)


def reduce(metrics: pd.DataFrame, metric: str, statistic: str) -> pd.DataFrame:
    """One column per node for one (metric, statistic); missing combinations are dropped."""
    cols = [c for c in metrics.columns if c[1] == metric and c[2] == statistic]
    out = metrics.loc[:, cols].astype(float)
    out.columns = [c[0] for c in cols]
    return out
