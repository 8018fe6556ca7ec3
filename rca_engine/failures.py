"""Why did this request fail? Causal attribution of a failure event to nodes' own failures.

The failure of each node is a binary variable F_v of a noisy-OR structural causal model over the causal graph
(callee -> caller)::

    F_v = O_v  or  any(F_u and B_uv for u in parents(v))

``O_v ~ Bernoulli(q_v)`` is the node failing on its own (its noise) and ``B_uv ~ Bernoulli(p_uv)`` says whether a
failure of callee ``u`` reaches ``v`` (retries and fallbacks make ``p_uv < 1``: a handled error). Both belong to
``v``'s mechanism, so a node's noise is (O_v, B_·v). From normal traffic, ``q_v`` is the node's failure rate when
none of its callees failed and ``p_uv`` how often ``v`` failed when ``u`` alone failed, shrunk toward the
structural prior "a caller fails when a callee it waits for fails" (``p = 1``; edge attribute
``propagation_prior`` overrides it), so a callee never seen failing still passes its first error on.

The IT score of a failure of the target is ``-log P(F_t = 1)`` (a one-in-10 error scores 2.3 nats, a
one-in-100,000 one 11.5), the ``upper`` base score of the latency engine applied to a binary event. A node's
contribution is its Shapley value in the game ``v(S) = log P(F_t = 1 | noise of S at its actual value)``, so the
contributions sum to the IT score. A player is a node's own failure together with whether each of its failures
reached its callers (O_u, B_u·): the event "u failed and it mattered". So a failure that a caller handled (B = 0:
retried, fell back) has no effect on the target and gets (almost) no blame, even in a request that failed for
another reason; with B_uv owned by the caller instead, coalitions leaving the caller's noise random would credit
the handled failure with the propagation it never had. The actual noise is not fully observed (did a caller fail on its own or
because of its failing callee?), so it is drawn from its exact posterior given every node's observed outcome
(abduction), and the game is averaged over those draws. Probabilities are computed in closed form by
propagating failure probabilities in topological order, vectorised over coalitions and posterior draws: exact
when the target's upstream graph is a tree of calls (each callee has one caller), otherwise the standard
independence approximation of noisy-OR networks, checked against brute force in the tests.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd

from . import shapley
from .errors import DataError, NotEnoughDataError, RCAError
from .graph import require_node, upstream_order, validate_graph

MIN_FAILURE_ROWS = 10
MAX_EXACT_PLAYERS = 11
_EPS = 1e-300


@dataclass(frozen=True)
class FailureMechanism:
    """How one node fails: on its own with ``own_rate``, or through a failing parent ``parents[i]`` with
    probability ``propagation[i]`` (``seen[i]`` training rows had that parent failing alone)."""

    node: Hashable
    own_rate: float
    parents: tuple[Hashable, ...] = ()
    propagation: tuple[float, ...] = ()
    seen: tuple[int, ...] = ()


@dataclass
class FailureModel:
    """A fitted noisy-OR failure model: one :class:`FailureMechanism` per node of the causal graph."""

    graph: nx.DiGraph
    mechanisms: dict[Hashable, FailureMechanism]
    n_rows: int
    failure_rate: dict[Hashable, float] = field(default_factory=dict)

    def failure_probability(self, node: Hashable) -> float:
        """P(F_node = 1) under the model (every node's noise random)."""
        require_node(self.graph, node)
        return float(self._marginals()[node])

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> pd.DataFrame:
        """``n`` requests drawn from the model: a 0/1 failure table, one column per node (synthetic traffic)."""
        rng = np.random.default_rng(rng)
        failed: dict[Hashable, np.ndarray] = {}
        for v in nx.topological_sort(self.graph):
            m = self.mechanisms[v]
            f = rng.random(n) < m.own_rate
            for u, p in zip(m.parents, m.propagation, strict=True):
                f |= failed[u] & (rng.random(n) < p)
            failed[v] = f
        return pd.DataFrame({k: v.astype(int) for k, v in failed.items()})

    def _marginals(self) -> dict[Hashable, float]:
        order = list(nx.topological_sort(self.graph))
        index = {n: i for i, n in enumerate(order)}
        mech = [self.mechanisms[v] for v in order]
        prob = noisy_or_marginals([[index[u] for u in m.parents] for m in mech],
                                  np.array([m.own_rate for m in mech]), [np.array(m.propagation) for m in mech])
        return {v: float(prob[i]) for i, v in enumerate(order)}


def noisy_or_marginals(parents: list[list[int]], own: np.ndarray, propagation: list[np.ndarray]) -> np.ndarray:
    """P(F_v = 1) of every node of a noisy-OR model, vectorised over leading axes (e.g. coalitions).

    Nodes are in topological order: ``parents[j]`` are indices of earlier nodes, ``own[..., j]`` node j's own
    failure rate and ``propagation[j][..., i]`` the probability that a failure of ``parents[j][i]`` reaches j.
    Exact when every node reaches the last one by a single path (a tree of calls); otherwise the standard
    independence approximation of noisy-OR networks (parents' failures treated as independent).
    """
    own = np.asarray(own, dtype=float)
    prob = np.empty_like(own)
    for j, ps in enumerate(parents):
        keep = 1.0 - own[..., j]
        for i, u in enumerate(ps):
            keep = keep * (1.0 - propagation[j][..., i] * prob[..., u])
        prob[..., j] = 1.0 - keep
    return prob


@dataclass
class FailureExplanation:
    """Why one failure happened (contributions in nats; they sum to ``outlier_score``)."""

    target: Hashable
    failed: bool
    outlier_score: float
    contributions: dict[Hashable, float]
    root_causes: list[Hashable]
    own_failure: dict[Hashable, float]
    success_without: dict[Hashable, float]
    handled: list[Hashable]
    observed: dict[Hashable, bool]
    method: str = "exact"
    posterior_draws: int = 0
    num_permutations: int = 0
    seed: int = 0

    @property
    def rarer_than(self) -> float:
        """1 / P(target fails) ('one in N')."""
        return float(np.exp(self.outlier_score))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (node ids as strings)."""
        return {
            "target": str(self.target),
            "failed": self.failed,
            "outlier_score": self.outlier_score,
            "rarer_than": self.rarer_than,
            "contributions": {str(k): v for k, v in self.contributions.items()},
            "root_causes": [str(n) for n in self.root_causes],
            "own_failure": {str(k): v for k, v in self.own_failure.items()},
            "success_without": {str(k): v for k, v in self.success_without.items()},
            "handled": [str(n) for n in self.handled],
            "observed": {str(k): v for k, v in self.observed.items()},
            "method": self.method,
            "posterior_draws": self.posterior_draws,
            "num_permutations": self.num_permutations,
            "seed": self.seed,
        }


def failure_model(graph: nx.DiGraph, own_rates: Mapping[Hashable, float],
                  propagation: Mapping[tuple[Hashable, Hashable], float] | None = None,
                  default_propagation: float = 1.0) -> FailureModel:
    """A failure model with given parameters: each node's own failure rate and each edge's (u, v) propagation
    (``default_propagation`` for edges not given), e.g. to draw synthetic traffic with :meth:`FailureModel.sample`."""
    validate_graph(graph)
    given = dict(propagation or {})
    mechanisms = {}
    for v in graph.nodes:
        parents = tuple(graph.predecessors(v))
        probs = tuple(float(given.get((u, v), default_propagation)) for u in parents)
        if v not in own_rates:
            raise RCAError(f"no own failure rate for node {v!r}")
        rates = (float(own_rates[v]), *probs)
        if not all(0.0 <= x <= 1.0 for x in rates):
            raise RCAError(f"node {v!r}: own rate and propagation must be probabilities in [0, 1], got {rates!r}")
        mechanisms[v] = FailureMechanism(v, rates[0], parents, probs, tuple(0 for _ in parents))
    return FailureModel(graph, mechanisms, 0)


def failure_table(data: object, nodes: list[Hashable]) -> np.ndarray:
    """Boolean matrix (rows x nodes) of failures from a table of 0/1, booleans or error counts (> 0 = failed)."""
    if isinstance(data, Mapping) and not isinstance(data, pd.DataFrame):
        data = pd.DataFrame([data])
    elif isinstance(data, pd.Series):
        data = data.to_frame().T
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"failure data must be a pandas DataFrame, Series or dict, got {type(data).__name__}")
    missing = [n for n in nodes if n not in data.columns]
    if missing:
        raise DataError(f"failure data has no column for node(s) {', '.join(map(repr, missing[:8]))}")
    block = data[nodes]
    try:
        values = block.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"failure data must be numeric or boolean (0/1, error counts): {exc}") from None
    if np.isnan(values).any():
        col = nodes[int(np.argwhere(np.isnan(values))[0][1])]
        raise DataError(f"failure data has NaN values (first in column {col!r}); use 0 for 'did not fail'")
    if (values < 0).any():
        col = nodes[int(np.argwhere(values < 0)[0][1])]
        raise DataError(f"failure data has negative values (first in column {col!r}); expected 0/1 or counts")
    return values > 0


def fit_failures(graph: nx.DiGraph, data: pd.DataFrame, *, prior_strength: float = 1.0,
                 min_rows: int = MIN_FAILURE_ROWS, own_prior: float | None = None) -> FailureModel:
    """Learn each node's own failure rate and each edge's propagation probability from normal traffic.

    ``data`` has one column per node: 0/1, booleans or error counts (> 0 = failed). ``prior_strength`` is the
    number of pseudo-observations of the structural prior (edge attribute ``propagation_prior``, default 1:
    the caller fails with its callee) that each propagation estimate is shrunk toward. ``own_prior`` is the
    number of pseudo-failures (and as many pseudo-successes) of each node's own failure rate; default: half a
    failure per trace shared among the nodes (Jeffreys' 0.5 for the request as a whole), so that a node never
    seen failing still may, and clean traffic of n traces makes a failure about 1-in-2n rare however many
    nodes the graph has (0.5 per node would make a first failure of a 20-node graph look 20 times commoner).
    """
    validate_graph(graph)
    if prior_strength < 0 or not np.isfinite(prior_strength):
        raise RCAError(f"prior_strength must be a finite number >= 0, got {prior_strength!r}")
    nodes = list(nx.topological_sort(graph))
    a = 0.5 / max(len(nodes), 1) if own_prior is None else float(own_prior)
    if a <= 0 or not np.isfinite(a):
        raise RCAError(f"own_prior must be a finite number > 0, got {own_prior!r}")
    failed = failure_table(data, nodes)
    if failed.shape[0] < min_rows:
        raise NotEnoughDataError(f"{failed.shape[0]} rows of normal traffic; the failure model needs at least "
                                 f"{min_rows}")
    col = {n: i for i, n in enumerate(nodes)}
    mechanisms: dict[Hashable, FailureMechanism] = {}
    for v in nodes:
        parents = tuple(graph.predecessors(v))
        fv = failed[:, col[v]]
        pf = failed[:, [col[u] for u in parents]] if parents else np.zeros((failed.shape[0], 0), bool)
        none = ~pf.any(axis=1)
        # smoothed: a node never seen failing on its own still may (rarity bounded by the data size)
        own = (float(fv[none].sum()) + a) / (float(none.sum()) + 2.0 * a)
        props, seen = [], []
        for i, u in enumerate(parents):
            alone = pf[:, i] & (pf.sum(axis=1) == 1)
            n_alone, k_alone = int(alone.sum()), int(fv[alone].sum())
            prior = float(graph.edges[u, v].get("propagation_prior", 1.0))
            if not 0.0 <= prior <= 1.0:
                raise RCAError(f"edge {u!r} -> {v!r}: propagation_prior must be in [0, 1], got {prior!r}")
            # P(F_v | only u failed) = 1 - (1 - q)(1 - p), shrunk toward the prior, solved for p
            rate = (k_alone + prior_strength * (1.0 - (1.0 - own) * (1.0 - prior))) / (n_alone + prior_strength) \
                if n_alone + prior_strength > 0 else prior
            props.append(float(np.clip(1.0 - (1.0 - rate) / (1.0 - own), 0.0, 1.0)))
            seen.append(n_alone)
        mechanisms[v] = FailureMechanism(v, own, parents, tuple(props), tuple(seen))
    rates = {n: float(failed[:, col[n]].mean()) for n in nodes}
    return FailureModel(graph, mechanisms, failed.shape[0], rates)


def failure_scores(model: FailureModel, data: object) -> pd.DataFrame:
    """IT score of each node's outcome per row: ``-log P(F_v = 1)`` where the node failed, 0 where it did not."""
    nodes = list(model.graph.nodes)
    failed = failure_table(data, nodes)
    marg = model._marginals()
    score = np.array([-np.log(max(marg[n], _EPS)) for n in nodes])
    index = data.index if isinstance(data, pd.DataFrame) else None
    return pd.DataFrame(np.where(failed, score[None, :], 0.0), columns=nodes, index=index)


class _Game:
    """The failure game of one trace: players are the target's upstream nodes, vectorised over coalitions
    (rows) and posterior draws (columns)."""

    def __init__(self, model: FailureModel, target: Hashable, observed: np.ndarray, draws: int,
                 rng: np.random.Generator) -> None:
        self.model = model
        self.players = upstream_order(model.graph, target)
        self.index = {n: i for i, n in enumerate(self.players)}
        self.observed = observed  # bool per player
        self.draws = draws
        self.own, self.edge = self._posterior(rng)

    def _posterior(self, rng: np.random.Generator) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
        """Draws of the actual noise given every outcome: own (players x draws) and, per edge u -> v with a
        failing u, whether the failure propagated (draws). Edges from a parent that did not fail are absent:
        their noise is unobserved and stays at its prior probability."""
        k = self.draws
        own = np.zeros((len(self.players), k), bool)
        edge: dict[tuple[int, int], np.ndarray] = {}
        for j, v in enumerate(self.players):
            m = self.model.mechanisms[v]
            live = [(self.index[u], p) for u, p in zip(m.parents, m.propagation, strict=True)
                    if self.observed[self.index[u]]]
            if not self.observed[j]:
                for i, _ in live:
                    edge[(i, j)] = np.zeros(k, bool)
                continue
            # exact sequential sampling of (O, B...) ~ prior conditioned on at least one being 1
            probs = np.array([m.own_rate] + [p for _, p in live])
            tail_none = np.concatenate([np.cumprod((1.0 - probs)[::-1])[::-1], [1.0]])  # P(none of z_i..)
            draws = np.zeros((probs.size, k), bool)
            need = np.ones(k, bool)  # no 1 yet among the earlier variables
            u = rng.random((probs.size, k))
            for i, p in enumerate(probs):
                p_any = 1.0 - tail_none[i]
                cond = np.where(need, p / max(p_any, _EPS), p)
                draws[i] = u[i] < cond
                need &= ~draws[i]
            if need.any():  # impossible under the model (p_any == 0): the node failed on its own
                draws[0] |= need
            own[j] = draws[0]
            for (i, _), row in zip(live, draws[1:], strict=True):
                edge[(i, j)] = row
        return own, edge

    def prob_fail(self, coal: np.ndarray) -> np.ndarray:
        """P(target fails | noise of each coalition's members at its drawn value): coalitions x draws."""
        c, k = coal.shape[0], self.draws
        prob: list[np.ndarray] = []
        for j, v in enumerate(self.players):
            m = self.model.mechanisms[v]
            fixed = coal[:, j][:, None]
            keep = np.where(fixed, ~self.own[j][None, :], 1.0 - m.own_rate).astype(float)
            for u, p in zip(m.parents, m.propagation, strict=True):
                i = self.index[u]
                drawn = self.edge.get((i, j))  # B_uv is player u's (the callee's) noise
                p_eff = np.where(coal[:, i][:, None], drawn[None, :], p) if drawn is not None else np.full((1, 1), p)
                keep = keep * (1.0 - p_eff * prob[i])
            prob.append(np.broadcast_to(1.0 - keep, (c, k)))
        return prob[-1]

    def value(self, coal: np.ndarray) -> np.ndarray:
        """v(S) averaged over the posterior draws: mean log P(target fails | S fixed)."""
        return np.log(np.maximum(self.prob_fail(coal), _EPS)).mean(axis=1)

    def success_without(self, j: int) -> float:
        """P(the target succeeds) had player j not failed on its own, everything else as it actually was."""
        if not self.own[j].any():
            return 0.0
        n = len(self.players)
        failed = np.zeros((n, self.draws), bool)
        for jj, v in enumerate(self.players):
            m = self.model.mechanisms[v]
            f = self.own[jj].copy() if jj != j else np.zeros(self.draws, bool)
            for u in m.parents:
                i = self.index[u]
                drawn = self.edge.get((i, jj))
                if drawn is not None:
                    f |= failed[i] & drawn
            failed[jj] = f
        return float(1.0 - failed[-1].mean())


def attribute_failure(model: FailureModel, target: Hashable, sample: object, *, seed: int = 0,
                      posterior_draws: int = 64, method: str = "auto", max_permutations: int = 256,
                      tolerance: float = 0.01) -> FailureExplanation:
    """Attribute the failure of ``target`` in ``sample`` (a row of outcomes per node) to nodes' own failures.

    Returns zero contributions and ``failed=False`` when the target did not fail (a handled error is nothing
    to explain). ``method`` is ``exact`` (all coalitions, up to 11 players), ``permutation`` (antithetic
    permutation sampling) or ``auto``.
    """
    if method not in ("auto", "exact", "permutation"):
        raise RCAError(f"unknown method {method!r}; choose one of auto, exact, permutation")
    if posterior_draws < 1:
        raise RCAError(f"posterior_draws must be >= 1, got {posterior_draws!r}")
    require_node(model.graph, target, "target")
    players = upstream_order(model.graph, target)
    row = failure_table(sample, players)
    if row.shape[0] != 1:
        raise DataError(f"attribute_failure explains one trace; got {row.shape[0]} rows")
    observed = row[0]
    obs = {n: bool(observed[i]) for i, n in enumerate(players)}
    handled = [n for n in players if obs[n] and any(not obs.get(c, True) for c in model.graph.successors(n)
                                                    if c in obs)]
    if not observed[-1]:
        zero = {n: 0.0 for n in players}
        return FailureExplanation(target, False, 0.0, zero, [], zero.copy(), zero.copy(), handled, obs,
                                  method="none", seed=seed)
    rng = np.random.default_rng(seed)
    game = _Game(model, target, observed, posterior_draws, rng)
    n = len(players)
    v_empty = float(np.log(max(model.failure_probability(target), _EPS)))
    score = -v_empty
    used = 0
    if n == 1:
        phi = np.array([score])
        chosen = "exact"
    else:
        chosen = method if method != "auto" else ("exact" if n <= MAX_EXACT_PLAYERS else "permutation")
        if chosen == "exact":
            phi = shapley.exact(game.value, n, v_empty, 0.0)
        else:
            phi, used = shapley.permutation(game.value, n, v_empty, 0.0, rng, max_permutations=max_permutations,
                                            tolerance=tolerance)
    contributions = {p: float(c) for p, c in zip(players, phi, strict=True)}
    ranked = sorted(players, key=lambda p: -contributions[p])
    root_causes = [p for p in ranked if contributions[p] > 0]
    own = {p: float(game.own[j].mean()) for j, p in enumerate(players)}
    success = {p: game.success_without(j) for j, p in enumerate(players)}
    return FailureExplanation(target, True, score, contributions, root_causes, own, success, handled, obs,
                              method=chosen, posterior_draws=posterior_draws, num_permutations=used, seed=seed)
