"""Re-implementations of the root-cause baselines of the PetShop paper (Hardt et al., CLeaR 2024, Table 2).

The paper evaluated these baselines with wrappers in amazon-science/petshop-root-cause-analysis (``code/``, commit
1c5992d) around the implementations of salesforce/PyRCA (``pyrca/analyzers``, master of Sep 2023); smooth traversal
comes from amazon-science/RCAWithMissingStructuralKnowledgeCode (``algorithms/petshop_root_cause_analysis_main/code/
smooth_traversal.py``). Each function below re-implements one wrapper + analyzer pair with the wrapper's default
configuration (the one ``run_experiments.py`` uses), vectorised, written from the descriptions (no code copied).
Deviations from the upstream code are listed in each docstring; the common ones:

- frames arrive as one column per node, larger = worse (availability as ``100 - x``); every statistic used here is
  invariant to that flip (absolute correlations, |z|, two-sided quantiles), so the rankings are unchanged;
- Monte-Carlo parts use a fixed seed (upstream: unseeded), and the random walk uses the walk's exact expected visit
  counts instead of 1000 sampled walks;
- ties are broken by the graph's / frame's node order (upstream: Python's stable sort on the same order).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import combinations

import networkx as nx
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.preprocessing import KBinsDiscretizer

from benchmarks.baselines import MadScorer
from benchmarks.petshop import ROW, Method

# ----------------------------------------------------------------------------------------------------------
# shared preprocessing (what the upstream wrappers do before calling PyRCA)


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns with at least one value (upstream drops all-NaN columns)."""
    return frame.loc[:, frame.notna().any().to_numpy()]


def mean_imputed(frame: pd.DataFrame) -> pd.DataFrame:
    """NaNs replaced by their column's mean (upstream ``impute_df(..., 'mean')``); all-NaN columns stay NaN."""
    return frame.fillna(frame.mean())


def common_measured(normal: pd.DataFrame, abnormal: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames restricted to the columns measured in both, each mean-imputed on its own."""
    n, a = measured(normal), measured(abnormal)
    cols = [c for c in n.columns if c in a.columns]
    return mean_imputed(n[cols]), mean_imputed(a[cols])


def marginalised(graph: nx.DiGraph, keep: set[str]) -> nx.DiGraph:
    """``graph`` over the nodes in ``keep``: a dropped node's causes become causes of its effects."""
    g = graph.copy()
    for node in [n for n in graph.nodes if n not in keep]:
        g.add_edges_from((p, s) for p in g.predecessors(node) for s in g.successors(node) if p != s)
        g.remove_node(node)
    return g


def anomalous_at_trigger(normal: pd.DataFrame, abnormal: pd.DataFrame, target: str) -> dict[str, float] | None:
    """MAD scores (> 5) of the anomalous nodes at the trigger row, or None when the target is not anomalous.

    The trigger row is the first row from ``ROW`` on where the target is anomalous (upstream
    ``get_anomalous_metrics_and_scores`` with ``search_for_anomaly=True`` and the MAD-score detector).
    """
    if target not in abnormal.columns:
        return None
    scorer = MadScorer().fit(normal)
    flags = scorer.anomalous(abnormal)
    scores = scorer.score(abnormal)
    hits = np.flatnonzero(flags[target].to_numpy()[ROW:])
    if hits.size == 0:
        return None
    row = ROW + int(hits[0])
    at = flags.iloc[row].to_numpy(dtype=bool)
    return {c: float(scores[c].iloc[row]) for c in flags.columns[at]}


def _ranked(scores: dict[str, float], order: list[str], k: int | None = None) -> list[str]:
    """Names by score, largest first, ties in ``order``; the first ``k`` (all when None)."""
    pos = {n: i for i, n in enumerate(order)}
    names = sorted(scores, key=lambda n: (-scores[n], pos.get(n, len(pos)), n))
    return names[:k] if k is not None else names


# ----------------------------------------------------------------------------------------------------------
# ε-Diagnosis


def epsilon_diagnosis(alpha: float = 0.05, bootstraps: int = 200, top_k: int = 3, seed: int = 0) -> Method:
    """ε-Diagnosis (Shan et al., WWW 2019) as configured in PetShop's ``epsilon_diagnosis.py`` over PyRCA.

    Per node, a two-sample similarity test between the normal and the abnormal time series of the target's
    metric/statistic: the statistic is the squared correlation of the two equally long series paired in time,
    ``rho2 = cov(N, A)^2 / (var(N) var(A))`` (as PyRCA: ``cov`` with ddof=1, ``var`` with ddof=0, i.e.
    ``(m/(m-1))^2 r^2``); 0 when either series is constant. A node is a root cause when ``rho2`` exceeds the
    ``1 - alpha`` quantile of its null distribution, bootstrapped from its normal series: ``bootstraps``
    independent resamples with replacement, ``r^2`` of every pair of resamples. Significant nodes are ranked by
    ``rho2``, the first ``top_k`` returned; none significant = "no issue". As upstream, the graph and the target
    are not used; columns are those measured in both periods, each period mean-imputed on its own; both series
    are the last ``m = min(len(normal), len(abnormal))`` rows (for an issue: the 5 abnormal rows against the last
    5 normal rows — the whole window, not only row ``ROW``). Deviation: seeded bootstrap (upstream unseeded).
    """

    def rank(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        n_df, a_df = common_measured(normal, abnormal)
        m = min(len(n_df), len(a_df))
        if n_df.shape[1] == 0 or m < 2:
            return []
        N = n_df.tail(m).to_numpy(dtype=float)
        A = a_df.tail(m).to_numpy(dtype=float)
        cols = list(n_df.columns)
        c = N.shape[1]
        # null per column: r^2 between pairs of independent resamples of its normal series
        rng = np.random.default_rng(seed)
        boot = np.take_along_axis(N.T[:, :, None], rng.integers(0, m, size=(c, m, bootstraps)), axis=1)
        centred = boot - boot.mean(axis=1, keepdims=True)
        cov = np.einsum("cmi,cmj->cij", centred, centred) / (m - 1)
        var = np.einsum("cii->ci", cov)
        denom = var[:, :, None] * var[:, None, :]
        iu = np.triu_indices(bootstraps, k=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(denom > 0, cov**2 / denom, 0.0)[:, iu[0], iu[1]]
        threshold = np.quantile(r2, 1 - alpha, axis=1)
        # statistic: normal vs abnormal series of the same node, paired in time
        nc, ac = N - N.mean(axis=0), A - A.mean(axis=0)
        cov_na = (nc * ac).sum(axis=0) / (m - 1)
        vn, va = N.var(axis=0), A.var(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho2 = np.where((vn > 0) & (va > 0), cov_na**2 / (vn * va), 0.0)
        sig = {cols[i]: float(rho2[i]) for i in np.flatnonzero(rho2 > threshold)}
        return _ranked(sig, cols, top_k)

    return Method(rank)


# ----------------------------------------------------------------------------------------------------------
# ranked correlation


def pearson_with(frame: pd.DataFrame, target: str) -> tuple[pd.Series, pd.Series]:
    """Pearson r and two-sided p-value of every column with ``target`` over pairwise-complete rows.

    As ``scipy.stats.pearsonr`` on the rows where both are measured: fewer than 2 rows or a constant series give
    NaN; 2 rows give p = 1; |r| = 1 gives p = 0.
    """
    X = frame.to_numpy(dtype=float)
    y = frame[target].to_numpy(dtype=float)[:, None]
    mask = ~np.isnan(X) & ~np.isnan(y)
    n = mask.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xm = np.where(mask, X, 0.0).sum(axis=0) / n
        ym = np.where(mask, y, 0.0).sum(axis=0) / n
        dx = np.where(mask, X - xm, 0.0)
        dy = np.where(mask, y - ym, 0.0)
        sxx, syy, sxy = (dx * dx).sum(axis=0), (dy * dy).sum(axis=0), (dx * dy).sum(axis=0)
        r = sxy / np.sqrt(sxx * syy)
        r = np.clip(r, -1.0, 1.0)
        r[(n < 2) | (sxx <= 0) | (syy <= 0)] = np.nan
        df = n - 2
        t = np.abs(r) * np.sqrt(np.maximum(df, 0) / (1.0 - r**2))
        p = np.where(np.abs(r) >= 1.0, 0.0, 2.0 * stats.t.sf(t, np.maximum(df, 1)))
    p = np.where(n == 2, 1.0, p)
    p = np.where(np.isnan(r), np.nan, p)
    return pd.Series(r, index=frame.columns), pd.Series(p, index=frame.columns)


def ranked_correlation(top_k: int = 3) -> Method:
    """Ranked correlation as configured in PetShop's ``ranked_correlation.py`` (defaults of ``make_ranked_correlation``).

    If the target is not anomalous at the trigger row (MAD score > 5, searching forward from ``ROW``): "no issue".
    Otherwise, among the other nodes anomalous at that row, rank by the p-value of the Pearson correlation of
    their metric with the target's over the abnormal window (``data_pool='abnormal'``: the 5 rows; NaNs dropped
    pairwise, ``rank_by='pvalue'``: smallest p first); nodes whose correlation is undefined are dropped; the first
    ``top_k``. Deviation: none in substance (ties in p, e.g. several p = 0, keep the frame's column order; pandas'
    ``sort_values`` leaves their order unspecified).
    """

    def rank(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        anomalous = anomalous_at_trigger(normal, abnormal, target)
        if anomalous is None:
            return []
        _, p = pearson_with(abnormal, target)
        p = p.drop(index=target).dropna()
        scores = {n: -float(v) for n, v in p.items() if n in anomalous}
        return _ranked(scores, list(abnormal.columns), top_k)

    return Method(rank)


# ----------------------------------------------------------------------------------------------------------
# CIRCA (regression-based hypothesis testing + descendant adjustment)


def circa(top_k: int = 3, adjustment: bool = True, threshold: float = 3.0) -> Method:
    """CIRCA (Li et al., KDD 2022) as configured in PetShop's ``circa.py`` over PyRCA's ``HT``.

    Data: the target's metric/statistic, columns measured in both periods, each period mean-imputed on its own;
    graph nodes without data are marginalised out. Per node, a linear regression (with intercept) on its causal
    parents fitted on the normal period; the abnormal rows' residuals are standardised by the normal residuals'
    mean and standard deviation (ddof 0; a zero deviation counts as 1, as sklearn's StandardScaler); a node's
    score is the largest |z| over the whole abnormal window (``aggregator='max'``; upstream scores all 5 rows, not
    only ``ROW``); root nodes are standardised directly. Descendant adjustment: a node with score > ``threshold``
    gets the largest score among its children plus, through children scoring below ``threshold``, their
    descendants, added to its own. All nodes ranked, the first ``top_k`` returned: CIRCA never says "no issue".

    Deviation: the adjustment reads every node's unadjusted score; PyRCA updates the scores in place while
    iterating in the graph's insertion order, so an already-adjusted child can feed its parent.
    """

    def rank(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        n_df, a_df = common_measured(normal, abnormal)
        g = marginalised(graph, set(n_df.columns))
        nodes = list(g.nodes)
        if not nodes:
            return []
        score: dict[str, float] = {}
        for node in nodes:
            parents = list(g.predecessors(node))
            y_n, y_a = n_df[node].to_numpy(dtype=float), a_df[node].to_numpy(dtype=float)
            if parents:
                X_n = np.column_stack([np.ones(len(n_df)), n_df[parents].to_numpy(dtype=float)])
                X_a = np.column_stack([np.ones(len(a_df)), a_df[parents].to_numpy(dtype=float)])
                coef = np.linalg.lstsq(X_n, y_n, rcond=None)[0]
                res_n, res_a = y_n - X_n @ coef, y_a - X_a @ coef
            else:
                res_n, res_a = y_n, y_a
            mu, sd = float(res_n.mean()), float(res_n.std())
            if not sd > 1e-12 * max(1.0, abs(mu)):
                sd = 1.0
            score[node] = float(np.max(np.abs((res_a - mu) / sd)))
        if adjustment:
            # children reachable through non-anomalous (score < threshold) children, effects first
            reach: dict[str, set[str]] = {}
            for node in reversed(list(nx.topological_sort(g))):
                kids = set(g.successors(node))
                for kid in g.successors(node):
                    if score[kid] < threshold:
                        kids |= reach[kid]
                reach[node] = kids
            score = {n: s + (max((score[k] for k in reach[n]), default=0.0) if s > threshold else 0.0)
                     for n, s in score.items()}
        return _ranked(score, nodes, top_k)

    return Method(rank)


# ----------------------------------------------------------------------------------------------------------
# random walk


def random_walk(rho: float = 0.1, num_steps: int = 10, top_k: int = 4, noise: float = 0.01, seed: int = 0) -> Method:
    """Random walk (MicroCause / CloudRanger style) as configured in PetShop's ``random_walk.py`` over PyRCA.

    If the target is not anomalous at the trigger row (MAD > 5, forward search from ``ROW``): "no issue". Data:
    the abnormal window of the target's metric/statistic, measured columns, mean-imputed, plus N(0, ``noise``)
    noise (upstream adds it so constant columns have a correlation); graph nodes without data are marginalised.
    Weights per anomalous node ``a`` and node ``v``: 1 if ``v = a``, 0 if ``v`` is an effect (child) of ``a``, else
    |corr(a, v)| over the 5 rows; a node's weight ``w(v)`` is the largest over the anomalous nodes; its self weight
    is ``max(0, w_a(v) - max over v's causes of w_a(cause))`` maximised over ``a`` (0 for an anomalous node).
    From ``v`` the walk moves to a cause ``p`` with weight ``w(p)``, to an effect ``s`` with ``rho * w(s)``, stays
    with its self weight; weights normalised per node. Score = visits in ``num_steps`` steps from every anomalous
    node, normalised. Only root nodes of the (marginalised) causal graph are candidates; the ``top_k`` (PyRCA
    hard-codes 4) best are returned.

    Deviations: exact expected visit counts (sum over t = 1..num_steps of the start distribution times P^t) instead
    of 1000 sampled walks per anomalous node with an unseeded generator; seeded noise; a node with all-zero
    weights stays where it is (PyRCA would fail on NaN probabilities).
    """

    def rank(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        anomalous = anomalous_at_trigger(normal, abnormal, target)
        if anomalous is None:
            return []
        data = mean_imputed(measured(abnormal))
        data = data[[c for c in data.columns if c in graph]]
        g = marginalised(graph, set(data.columns))
        nodes = list(g.nodes)
        data = data[nodes]
        anomalies = [n for n in nodes if n in anomalous]
        if not anomalies:
            return []
        values = data.to_numpy(dtype=float)
        values = values + np.random.default_rng(seed).normal(0.0, noise, values.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.nan_to_num(np.abs(np.corrcoef(values, rowvar=False)), nan=0.0)
        corr = np.atleast_2d(corr)
        pos = {n: i for i, n in enumerate(nodes)}
        k = len(nodes)
        adj = nx.to_numpy_array(g, nodelist=nodes) > 0  # adj[i, j]: i causes j
        a_idx = np.array([pos[a] for a in anomalies])
        w = corr[a_idx].copy()  # (anomalies, nodes)
        w[adj[a_idx]] = 0.0  # effects of the anomaly
        w[np.arange(len(a_idx)), a_idx] = 1.0
        # largest weight among each node's causes, per anomaly
        cause_w = np.where(adj.T[None, :, :], w[:, None, :], -np.inf).max(axis=2)  # (anomalies, nodes)
        cause_w = np.where(np.isfinite(cause_w), cause_w, 0.0)
        self_w = np.maximum(0.0, w - cause_w)
        self_w[:, a_idx] = 0.0
        node_w, self_ws = w.max(axis=0), self_w.max(axis=0)
        P = adj.T * node_w[None, :] + adj * (rho * node_w[None, :]) + np.diag(self_ws)
        total = P.sum(axis=1)
        stuck = total <= 0
        P[stuck, :] = 0.0
        P[stuck, np.flatnonzero(stuck)] = 1.0
        P = P / P.sum(axis=1, keepdims=True)
        dist = np.zeros(k)
        dist[a_idx] = 1.0
        visits = np.zeros(k)
        for _ in range(num_steps):
            dist = dist @ P
            visits += dist
        visits /= visits.sum()
        roots = [n for n in nodes if g.in_degree(n) == 0]
        return _ranked({n: float(visits[pos[n]]) for n in roots}, nodes, top_k)

    return Method(rank)


# ----------------------------------------------------------------------------------------------------------
# smooth traversal


def it_scores(normal: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """IT score of ``sample[j]`` against column ``j`` of ``normal`` with the two-sided rescaled CDF-quantile base score.

    Base score (DoWhy's RescaledMedianCDFQuantileScorer): ``-log(2 min(P(X > x) + P(X = x)/2, P(X < x) + P(X = x)/2))``
    with x counted in the sample; IT score (DoWhy's ITAnomalyScorer): ``-log((#{normal base scores >= s(x)} + 0.5) /
    (n + 0.5))``. Counts by sorting, O(n log n) per column. ``normal`` must have no NaN.
    """
    n, c = normal.shape
    srt = np.sort(normal, axis=0)

    def base(x: np.ndarray) -> np.ndarray:  # x: (rows, c)
        less = np.column_stack([np.searchsorted(srt[:, j], x[:, j], side="left") for j in range(c)])
        upto = np.column_stack([np.searchsorted(srt[:, j], x[:, j], side="right") for j in range(c)])
        equal = upto - less + 1
        smaller, greater = less + equal / 2, (n - upto) + equal / 2
        p = 2 * np.minimum(smaller, greater) / (n + 1)
        return -np.log(np.where(p == 0, np.finfo(float).eps, p))

    train = np.sort(base(normal), axis=0)
    s = base(sample[None, :])[0]
    at_least = n - np.array([np.searchsorted(train[:, j], s[j], side="left") for j in range(c)])
    return -np.log((at_least + 0.5) / (n + 0.5))


def smooth_traversal(absent: str = "upstream") -> Method:
    """Smooth traversal (Orchard, Okati et al., NeurIPS 2025, Algorithm 1) as in its PetShop wrapper.

    Graph: the target and its ancestors. Normal data mean-imputed per column, then by the mean of all column
    means (also for graph nodes with no data); abnormal row ``ROW`` with NaNs filled by the abnormal window's
    column mean, then by the mean of those means, and nodes absent from the window by their normal mean. Each
    node's IT score (two-sided rescaled CDF-quantile base score) against its normal data; a root's score is its IT
    score, any other node's is ``max(0, min over parents of (its score - the parent's))``. All nodes ranked (never
    "no issue"). Deviation: a target absent from the graph gives "no issue" (upstream raises).

    ``absent="typical"`` (our variant, not upstream): a value missing at row ``ROW`` is taken as the node's normal
    mean. Upstream's fill by the window's mean of means makes a node with no data in the window (e.g. STS,
    latency ~0.7 s in normal data) look extreme, so such nodes fill the top of the ranking.
    """
    if absent not in ("upstream", "typical"):
        raise ValueError(f"absent must be 'upstream' or 'typical', not {absent!r}")

    def rank(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        if target not in graph:
            return []
        sub = graph.subgraph(nx.ancestors(graph, target) | {target})
        nodes = [n for n in graph.nodes if n in sub]
        norm = mean_imputed(normal)
        overall = float(np.nanmean(norm.mean().to_numpy())) if norm.shape[1] else 0.0
        norm = norm.reindex(columns=nodes).fillna(overall if np.isfinite(overall) else 0.0)
        ab = abnormal.copy()
        if absent == "typical":
            ab = ab.reindex(columns=nodes).fillna(norm.mean())
        ab_overall = float(np.nanmean(ab.mean().to_numpy())) if ab.notna().any().any() else 0.0
        ab = ab.reindex(columns=nodes)
        ab = ab.fillna(ab.mean()).fillna(ab_overall)
        for node in nodes:
            if node not in abnormal.columns:
                ab[node] = norm[node].mean()
        if len(ab) <= ROW:
            return []
        s = dict(zip(nodes, it_scores(norm.to_numpy(dtype=float), ab.iloc[ROW].to_numpy(dtype=float)), strict=True))
        gap = {n: s[n] if sub.in_degree(n) == 0 else max(0.0, min(s[n] - s[p] for p in sub.predecessors(n)))
               for n in nodes}
        return _ranked(gap, nodes)

    return Method(rank)


# ----------------------------------------------------------------------------------------------------------
# RCD (F-node, localized ψ-PC on discretised data, chunking)


def kmeans_binned(values: np.ndarray, bins: int) -> np.ndarray:
    """Per-column ordinal bin codes of 1-D k-means bins (PyRCA: ``KBinsDiscretizer(bins, 'ordinal', 'kmeans')``).

    Constant columns get the single code 0; bins narrower than 1e-8 are merged (sklearn's behaviour, its warnings
    silenced). ``values`` must be finite; at most one bin per row.
    """
    n_bins = min(bins, values.shape[0])
    if n_bins < 2:
        return np.zeros(values.shape, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant columns, merged bins, fewer distinct values than bins
        codes = KBinsDiscretizer(n_bins=n_bins, encode="ordinal", strategy="kmeans").fit_transform(values)
    return codes.astype(np.int64)


def ci_pvalue(codes: np.ndarray, x: int, y: int, given: Sequence[int] = (), g_test: bool = False) -> float:
    """p-value of ``X ⫫ Y | S`` on the discrete columns ``x``, ``y``, ``given`` of ``codes`` (non-negative ints).

    Pearson chi-square (``g_test``: G-test, the likelihood ratio) summed over the strata of ``S`` that occur;
    degrees of freedom per stratum ``(values of X present - 1) x (values of Y present - 1)``, summed; p = 1 when
    they sum to 0 (causal-learn's ``chisq`` / ``gsq``, which PyRCA's RCD uses).
    """
    xs, ys = codes[:, x], codes[:, y]
    strata = np.zeros(codes.shape[0], dtype=np.int64)
    for col in given:  # mixed-radix stratum index, re-compressed after each column (no overflow)
        strata = np.unique(strata * (int(codes[:, col].max()) + 1) + codes[:, col], return_inverse=True)[1]
    k, cx, cy = int(strata.max()) + 1, int(xs.max()) + 1, int(ys.max()) + 1
    observed = np.bincount((strata * cx + xs) * cy + ys, minlength=k * cx * cy).reshape(k, cx, cy).astype(float)
    sx, sy = observed.sum(axis=2), observed.sum(axis=1)
    sn = sx.sum(axis=1)
    sn = np.where(sn > 0, sn, 1.0)  # strata not occurring contribute nothing
    expected = sx[:, :, None] * sy[:, None, :] / sn[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if g_test:
            stat = 2.0 * float(np.sum(np.where(observed > 0, observed * np.log(observed / expected), 0.0)))
        else:
            stat = float(np.sum(np.where(expected > 0, (observed - expected) ** 2 / expected, 0.0)))
    dof = int((((sx > 0).sum(axis=1) - 1).clip(0) * ((sy > 0).sum(axis=1) - 1).clip(0)).sum())
    return 1.0 if dof == 0 else float(stats.chi2.sf(stat, dof))


def rcd(start_alpha: float = 0.01, alpha_step: float = 0.1, alpha_limit: float = 1.0, gamma: int = 5, bins: int = 5,
        top_k: int = 3, g_test: bool = False, seed: int = 0) -> Method:
    """RCD (Ikram et al., NeurIPS 2022) as configured in PetShop's ``hierarchical_rcd.py`` over PyRCA's ``RCD``.

    Data (the wrapper): the target's metric/statistic of every node, columns measured in both periods, each period
    mean-imputed on its own; the whole abnormal window (all 5 rows, not only ``ROW``) against the whole normal
    period. As upstream, neither the graph nor the target is used: every measured node is a candidate, the target
    included. RCD (PyRCA ``thirdparty/rcd``): normal and abnormal rows are stacked with an F-node column (0 normal,
    1 abnormal) and every node discretised into ``bins`` 1-D k-means bins (`kmeans_binned`). ψ-PC at level ``alpha``
    is PC's skeleton search localised to the F-node: starting from F adjacent to every node, at depth d = 0, 1, ...
    each node y still adjacent to F (in random order) is tested ``F ⫫ y | S`` (`ci_pvalue`, chi-square) for every
    S of d other current F-neighbours, in column order; the first p > alpha removes the edge at once; every
    dependent p-value is recorded. The nodes still adjacent to F are the candidates ("F-children"). Top-k (PyRCA's
    ``__top_k_rc``): for alpha = ``start_alpha``, ``+ alpha_step``, ... < ``alpha_limit`` (0.01, 0.11, ..., 0.91)
    the new F-children are appended, ordered by their recorded p-values (compared as lists, smallest first); it
    stops once exactly ``min_nodes`` are found. Phase 1 (chunking): the nodes are shuffled into chunks of ``gamma``,
    each chunk keeps its top-k with ``min_nodes = 1``, and the union is chunked again until at most ``gamma`` remain
    or a level removes none. Phase 2: top-k over the survivors with ``min_nodes`` = their number; the first
    ``top_k`` are returned. Never "no issue" unless no node is ever dependent on F.

    Deviations: one seeded generator (``seed``) for the chunk shuffles and the neighbour order (upstream: numpy's
    unseeded global generator, so its rankings vary between runs; PyRCA runs once, no repetitions); each column is
    discretised once for all chunks (the same bins: k-means bins are per column); p-values are cached across
    alphas, chunks and levels (the same test gives the same p); an empty final phase returns [] (upstream fails
    in the discretiser); at most one bin per row. Availability arrives as ``100 - x``: the k-means bins mirror and
    the chi-square statistic is unchanged.
    """
    alphas = np.arange(start_alpha, alpha_limit, alpha_step)

    def rank(graph: nx.DiGraph, target: str, metric: str, normal: pd.DataFrame, abnormal: pd.DataFrame) -> list[str]:
        n_df, a_df = common_measured(normal, abnormal)
        names = list(n_df.columns)
        if not names or len(n_df) == 0 or len(a_df) == 0:
            return []
        values = np.vstack([n_df.to_numpy(dtype=float), a_df.to_numpy(dtype=float)])
        f_flag = np.r_[np.zeros(len(n_df), dtype=np.int64), np.ones(len(a_df), dtype=np.int64)]
        codes = np.column_stack([kmeans_binned(values, bins), f_flag])
        f_col = codes.shape[1] - 1
        rng = np.random.default_rng(seed)
        cache: dict[tuple[int, tuple[int, ...]], float] = {}

        def pvalue(y: int, given: tuple[int, ...]) -> float:
            key = (y, tuple(sorted(given)))
            if key not in cache:
                cache[key] = ci_pvalue(codes, f_col, y, key[1], g_test)
            return cache[key]

        def f_children(nodes: list[int], alpha: float) -> tuple[list[int], dict[int, list[float]]]:
            adjacent = list(nodes)
            recorded: dict[int, list[float]] = {y: [] for y in nodes}
            depth = 0
            while depth < len(adjacent):
                for y in rng.permutation(adjacent).tolist():
                    for given in combinations([s for s in adjacent if s != y], depth):
                        p = pvalue(y, given)
                        if p > alpha:
                            adjacent.remove(y)
                            break
                        recorded[y].append(p)
                depth += 1
            return adjacent, recorded

        def top(nodes: list[int], min_nodes: int) -> list[int]:
            found: list[int] = []
            for alpha in alphas:
                children, recorded = f_children(nodes, float(alpha))
                new = [c for c in children if c not in found]
                # smallest p-value list first; equal lists: the later column first (PyRCA's argmax-and-prepend)
                found += sorted(new, key=lambda c: (recorded[c], -new.index(c)))
                if len(found) == min_nodes:
                    break
            return found

        nodes = list(range(len(names)))
        while True:  # phase 1: chunks of gamma until few enough nodes remain or a level removes none
            before = len(nodes)
            shuffled = rng.permutation(nodes).tolist()
            nodes = [c for i in range(0, len(shuffled), gamma) for c in top(shuffled[i:i + gamma], 1)]
            if len(nodes) <= gamma or len(nodes) == before:
                break
        if not nodes:
            return []
        return [names[i] for i in top(nodes, len(nodes))[:top_k]]

    return Method(rank)


# table row name -> factory of the method under the paper's protocol
PUBLISHED_METHODS: dict[str, Callable[[], Method]] = {
    "ε-Diagnosis (PyRCA config, re-implemented)": epsilon_diagnosis,
    "ranked correlation (re-implemented)": ranked_correlation,
    "CIRCA (PyRCA HT config, re-implemented)": circa,
    "random walk (PyRCA config, re-implemented)": random_walk,
    "smooth traversal (NeurIPS 2025, re-implemented)": smooth_traversal,
    "smooth traversal, absent value = normal mean (our variant)": lambda: smooth_traversal(absent="typical"),
    "RCD (PyRCA config, re-implemented)": rcd,
}
