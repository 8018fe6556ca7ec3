"""Simple root-cause baselines every causal method must beat: per-node anomaly scores and graph traversal.

Own implementations (not copied) of the rules used in the PetShop benchmark: a node is anomalous when its
median-absolute-deviation score exceeds a threshold; "traversal" names anomalous nodes with no anomalous
parent (cause) that reach the target through anomalous nodes only.
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx
import numpy as np
import pandas as pd

MAD_THRESHOLD = 5.0


class MadScorer:
    """Per-column score ``|x - median| / MAD`` fitted on normal data (NaNs ignored).

    MAD is the normal-consistent one (``median|x - med| / 0.6745``, as statsmodels' ``mad``). Columns with fewer
    than ``min_rows`` values get no scorer (never anomalous); constant columns score by absolute deviation from
    their mean with threshold 0; columns with zero MAD but some spread score +inf for any deviation; as in the
    PetShop baseline.
    """

    def __init__(self, min_rows: int = 10):
        self.min_rows = min_rows

    def fit(self, normal: pd.DataFrame) -> MadScorer:
        self.median_: dict[str, float] = {}
        self.scale_: dict[str, float] = {}
        self.constant_: set[str] = set()
        for col in normal.columns:
            values = normal[col].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if values.size < self.min_rows:
                continue
            if np.std(values) == 0:
                self.median_[col] = float(np.mean(values))
                self.scale_[col] = 0.0
                self.constant_.add(col)
                continue
            med = float(np.median(values))
            self.median_[col] = med
            self.scale_[col] = float(np.median(np.abs(values - med))) / 0.6745
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Scores of every row (NaN input -> score 0)."""
        out = pd.DataFrame(0.0, index=frame.index, columns=frame.columns)
        for col in frame.columns:
            if col not in self.median_:
                continue
            dev = np.abs(frame[col].to_numpy(dtype=float) - self.median_[col])
            scale = self.scale_[col]
            if scale > 0:
                sc = dev / scale
            elif col in self.constant_:
                sc = dev
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    sc = np.where(dev > 0, np.inf, 0.0)
            out[col] = np.nan_to_num(sc, nan=0.0, posinf=np.inf)
        return out

    def anomalous(self, frame: pd.DataFrame, threshold: float = MAD_THRESHOLD) -> pd.DataFrame:
        scores = self.score(frame)
        flags = scores > threshold
        for col in frame.columns:
            if col in self.constant_:
                flags[col] = scores[col] > 0
            elif col not in self.median_:
                flags[col] = False
        return flags


def traversal(causal_graph: nx.DiGraph, target: str, scores: Mapping[str, float]) -> list[str]:
    """Rank anomalous nodes without anomalous causes that reach ``target`` along anomalous nodes only.

    ``scores``: anomaly score of every anomalous node (the others are absent). A candidate's score is the
    largest sum of scores along an all-anomalous path to the target.
    """
    anomalous = set(scores)
    if target not in anomalous:
        return []
    sub = causal_graph.subgraph(n for n in causal_graph if n in anomalous)
    if target not in sub:
        # the target is anomalous but not a graph node: it is its own only explanation
        return [target]
    ranked: dict[str, float] = {}
    # longest (max score-sum) path from each node to the target inside the anomalous subgraph (a DAG)
    best: dict[str, float] = {target: float(scores[target])}
    for node in reversed(list(nx.topological_sort(sub))):
        if node == target:
            continue
        vals = [best[s] for s in sub.successors(node) if s in best]
        if vals:
            best[node] = float(scores[node]) + max(vals)
    for node, total in best.items():
        if not any(True for _ in sub.predecessors(node)):
            ranked[node] = total
    return [n for n, _ in sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))]


def largest_score(scores: Mapping[str, float], candidates: set[str] | None = None) -> list[str]:
    """Rank nodes by their anomaly score alone (no graph)."""
    items = [(n, s) for n, s in scores.items() if candidates is None or n in candidates]
    return [n for n, s in sorted(items, key=lambda kv: (-kv[1], kv[0])) if s > 0]
