"""The fitted causal model: graph + one mechanism per node, noise reconstruction, sampling and IT scores."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from .data import sample_frame, training_matrix
from .errors import DataError, MechanismError, RCAError
from .graph import ordered_parents, require_node, upstream_order, validate_graph
from .mechanisms import Mechanism, make_mechanism, select_auto
from .options import DEFAULT_REFERENCE_SIZE, Options, resolve
from .scoring import ITScorer, check_options

MechanismSpec = str | Mechanism


class CausalModel:
    """A fitted structural causal model with additive noise (use :func:`fit` to build one).

    Nodes are kept in topological order (``nodes``); ``parent_idx[i]`` are the column indices of node i's
    parents; ``mechanisms`` is the fitted mechanism per node (``mechanism_names()``: what ``auto`` chose);
    ``options`` the :class:`Options` it was fitted with, which scoring and attribution use unless told otherwise.
    Picklable (plain numpy arrays and scikit-learn estimators).
    """

    def __init__(self, graph: nx.DiGraph, mechanisms: dict[Hashable, Mechanism], training: np.ndarray,
                 specs: Mapping[Hashable, MechanismSpec], seed: int, reference_size: int = DEFAULT_REFERENCE_SIZE,
                 joint_noise: bool = False, tail_fraction: float = 0.0, incident: np.ndarray | None = None,
                 options: Options | None = None) -> None:
        self.graph = graph
        self.nodes: list[Hashable] = list(nx.topological_sort(graph))
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.parent_idx = [np.array([self.index[p] for p in ordered_parents(graph, n)], dtype=int) for n in self.nodes]
        self.mechanisms = mechanisms
        self.training = training  # rows x nodes (topological order)
        self.specs = dict(specs)  # requested mechanism per node (for refits, e.g. bootstrap)
        self.seed = seed
        self.reference_size = reference_size
        self.joint_noise = joint_noise  # draw the noises of one training row together (see fit)
        self.tail_fraction = tail_fraction  # exponential tails beyond the training noise (see fit)
        self.incident = incident  # rows x nodes that informed the mechanisms f but not the noise (see fit)
        self.options = options if options is not None else Options(
            seed=seed, reference_size=reference_size, joint_noise=joint_noise, tail_fraction=tail_fraction)
        self._scorers: dict[tuple[Hashable, str, str], ITScorer] = {}
        self._lock = threading.Lock()

    # -- pickling: the lock is not picklable, the scorer cache is worth keeping
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if "options" not in state:  # pickled before options existed: its fit settings, default scoring
            self.options = Options(seed=int(state.get("seed", 0)),  # type: ignore[call-overload]
                                   reference_size=int(state.get("reference_size", DEFAULT_REFERENCE_SIZE)),  # type: ignore[call-overload]
                                   joint_noise=bool(state.get("joint_noise", False)),
                                   tail_fraction=float(state.get("tail_fraction", 0.0)))  # type: ignore[arg-type]

    @property
    def n_rows(self) -> int:
        """Number of training rows the model was fitted on."""
        return int(self.training.shape[0])

    def mechanism_names(self) -> dict[Hashable, str]:
        """The mechanism actually used per node (after 'auto' selection)."""
        return {n: self.mechanisms[n].name for n in self.nodes}

    def with_rows(self, rows: np.ndarray) -> CausalModel:
        """The model with every non-root mechanism f refitted on the training rows, any earlier incident rows and
        ``rows`` (rows x ``nodes``); noise distributions, roots and the mechanisms ``auto`` chose stay as they are
        (see ``fit``'s ``incident``). Used for ``Options.fit_on_sample``."""
        rows = np.asarray(rows, dtype=float).reshape(-1, len(self.nodes))
        extra = rows if self.incident is None else np.vstack([self.incident, rows])
        return _fit_values(self.graph, self.training, chosen_specs(self), self.options, extra)

    def upstream(self, target: Hashable) -> list[Hashable]:
        """Ancestors of ``target`` and the target, topologically ordered (the attribution's players)."""
        require_node(self.graph, target, "target")
        return upstream_order(self.graph, target)

    def values_of(self, sample: object, nodes: list[Hashable] | None = None) -> np.ndarray:
        """Validated rows x ``nodes`` (default all) float matrix of a sample / samples."""
        return sample_frame(sample, nodes if nodes is not None else self.nodes)

    def noise_of(self, values: np.ndarray, nodes: list[Hashable]) -> np.ndarray:
        """Reconstructed noise (rows x ``nodes``) from node values (rows x ``nodes``); ``nodes`` ancestor-closed."""
        col = {n: j for j, n in enumerate(nodes)}
        out = np.empty_like(values)
        for j, n in enumerate(nodes):
            pcols = [col[self.nodes[p]] for p in self.parent_idx[self.index[n]]]
            out[:, j] = self.mechanisms[n].noise(values[:, pcols], values[:, j])
        return out

    def propagate(self, noise: np.ndarray, nodes: list[Hashable]) -> np.ndarray:
        """Node values (rows x ``nodes``) from noise (rows x ``nodes``); ``nodes`` ancestor-closed, topological."""
        col = {n: j for j, n in enumerate(nodes)}
        out = np.empty_like(noise)
        for j, n in enumerate(nodes):
            pcols = [col[self.nodes[p]] for p in self.parent_idx[self.index[n]]]
            out[:, j] = self.mechanisms[n].evaluate(out[:, pcols], noise[:, j])
        return out

    def draw_noise(self, n: int, nodes: list[Hashable], rng: np.random.Generator,
                   empirical: bool = False) -> np.ndarray:
        """``n`` noise draws (rows x ``nodes``): independent per node, or whole training rows with ``joint_noise``.

        Independent draws get the fitted exponential tails of ``tail_fraction`` unless ``empirical`` (DoWhy's
        exact algorithm draws the training residuals only)."""
        if not nodes:
            return np.empty((n, 0))
        if getattr(self, "joint_noise", False):
            rows = rng.integers(0, self.n_rows, size=n)
            return np.column_stack([self.mechanisms[v].noise_samples_[rows] for v in nodes])
        tail = 0.0 if empirical else float(getattr(self, "tail_fraction", 0.0))
        return np.column_stack([self.mechanisms[v].draw_noise(n, rng, tail) for v in nodes])

    def sample(self, n: int, seed: int | None = None) -> pd.DataFrame:
        """``n`` samples of all nodes drawn from the fitted model."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return pd.DataFrame(self.propagate(self.draw_noise(n, self.nodes, rng), self.nodes), columns=self.nodes)

    def scorer(self, node: Hashable, base: str | None = None, tail: str | None = None) -> ITScorer:
        """The IT scorer of ``node``'s marginal, fitted once on ``reference_size`` model samples and cached."""
        require_node(self.graph, node)
        base = base or self.options.base
        tail = tail or self.options.tail
        check_options(base, tail)
        key = (node, base, tail)
        with self._lock:
            found = self._scorers.get(key)
            if found is None:
                nodes = upstream_order(self.graph, node)
                rng = np.random.default_rng([self.seed, 7, self.index[node]])
                values = self.propagate(self.draw_noise(self.reference_size, nodes, rng), nodes)[:, -1]
                found = ITScorer(base, tail).fit(values)
                self._scorers[key] = found
        return found

    def it_score(self, node: Hashable, values: object, base: str | None = None, tail: str | None = None) -> np.ndarray:
        """Vectorised IT outlier scores (nats) of many values of one node against its fitted marginal (base score
        and tail estimator: the model's options unless given)."""
        try:
            arr = np.asarray(values, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"values of {node!r} must be numbers, got {type(values).__name__}") from None
        if not np.isfinite(arr).all():
            raise DataError(f"values of {node!r} have {int((~np.isfinite(arr)).sum())} NaN/inf entries")
        return self.scorer(node, base, tail).score(arr)


def _resolve_specs(graph: nx.DiGraph, mechanisms: MechanismSpec | Mapping[Any, MechanismSpec],
                   fallback: str = "auto") -> dict[Hashable, MechanismSpec]:
    if isinstance(mechanisms, Mapping):
        for node in mechanisms:
            require_node(graph, node, "node in mechanisms")
        return {n: mechanisms.get(n, fallback) for n in graph.nodes}
    if isinstance(mechanisms, (str, Mechanism)):
        if isinstance(mechanisms, Mechanism):
            raise MechanismError("pass a mechanism instance per node in a dict, not one instance for all nodes")
        return {n: mechanisms for n in graph.nodes}
    raise MechanismError(f"mechanisms must be a name or a dict node -> name, got {type(mechanisms).__name__}")


def chosen_specs(model: CausalModel) -> dict[Hashable, MechanismSpec]:
    """The model's requested mechanisms with what ``auto`` chose in place of "auto" (refits stay comparable)."""
    specs = {n: (s if not isinstance(s, str) or s != "auto" else model.mechanisms[n].name) for n, s in model.specs.items()}
    return {n: ("auto" if s == "empirical" else s) for n, s in specs.items()}


def fit(graph: nx.DiGraph, data: pd.DataFrame, mechanisms: MechanismSpec | Mapping[Any, MechanismSpec] | None = None,
        *, preset: str | None = None, options: Options | None = None, incident: pd.DataFrame | None = None,
        dropna: bool | None = None, min_rows: int | None = None, seed: int | None = None,
        reference_size: int | None = None, joint_noise: bool | None = None,
        tail_fraction: float | None = None) -> CausalModel:
    """Fit one additive-noise mechanism per node of the cause -> effect DAG ``graph`` on ``data``.

    Settings come from ``options`` (an :class:`Options`) or the named ``preset`` ("default", "latency",
    "metrics", "dowhy"; see :mod:`rca_engine.options`), else the defaults; the keyword arguments below override
    single fields. The model keeps its options: ``attribute`` and ``outlier_scores`` use them unless told otherwise.

    ``mechanisms``: None (the options' ``mechanisms``, "auto" by default: the simplest of linear, linear + maximum
    and gradient boosting that no richer one clearly beats on held-out rows), one name for every non-root node
    ("linear", "additive", "maxlinear", "nonlinear", "sum", "max", "auto"), or a dict node -> name or
    :class:`Mechanism` (missing nodes -> the options' ``mechanisms``). Roots always get the empirical distribution of
    their values. ``model.mechanism_names()`` reports the choice per node. Raises :class:`RCAError` subclasses on
    bad input.
    ``joint_noise``: Monte-Carlo draws take the reconstructed noises of one training row together instead of each
    node's independently. Under the method's assumption (independent noises) both are the same distribution; when a
    hidden common cause correlates the noises (shared traffic on every service), joint draws keep the simulated
    marginals as narrow as the real ones, so outlier scores do not collapse.
    ``tail_fraction`` (0 to 0.25; 0 = DoWhy's purely empirical noise): Monte-Carlo noise beyond each node's
    (1 - tail_fraction) training quantile (and below its tail_fraction quantile) follows an exponential tail fitted
    to the training noise there, so simulated latencies reach beyond the largest training value, as new data does.
    With a few hundred training rows the purely empirical model makes rare-but-normal values look far rarer than
    they are (on random call graphs with 100 training rows, ~8e-4 of normal requests scored above the 1-in-10,000
    level at 0; 1e-4 to 3e-4 at 0.1: benchmarks/results/calibration.md).
    ``incident``: rows observed during the incident to be explained (same columns as ``data``). The method assumes
    that a fault changes the noise of its root cause only, never a mechanism f, so these rows are valid -- and very
    informative -- data for f: where the normal data hardly moves a callee, only the incident shows how much of its
    change reaches the caller, and f fitted on normal rows alone reads the caller's share as the caller's own
    noise. With ``incident``, f of every non-root node is fitted on the normal and the incident rows together;
    noise distributions, roots and the scorers use the normal rows only (benchmarks/results/petshop.md).
    ``Options.fit_on_sample`` (the ``metrics`` preset) does the same at ``attribute`` time with the rows explained.
    """
    opts = resolve(None, preset, options, dropna=dropna, min_rows=min_rows, seed=seed, reference_size=reference_size,
                   joint_noise=joint_noise, tail_fraction=tail_fraction)
    if isinstance(mechanisms, str):
        opts = opts.replace(mechanisms=mechanisms)  # validates the name too
    validate_graph(graph)
    specs = _resolve_specs(graph, opts.mechanisms if mechanisms is None else mechanisms, opts.mechanisms)
    order = list(nx.topological_sort(graph))
    values = training_matrix(data, order, dropna=opts.dropna, min_rows=opts.min_rows)
    extra = None
    if incident is not None:
        if isinstance(incident, pd.Series):
            incident = incident.to_frame().T
        extra = training_matrix(incident, order, dropna=opts.dropna, min_rows=1, what="incident data")
    return _fit_values(graph, values, specs, opts, extra)


def _fit_values(graph: nx.DiGraph, values: np.ndarray, specs: Mapping[Hashable, MechanismSpec], options: Options,
                incident: np.ndarray | None = None) -> CausalModel:
    order = list(nx.topological_sort(graph))
    index = {n: i for i, n in enumerate(order)}
    rng = np.random.default_rng(options.seed)
    fitted: dict[Hashable, Mechanism] = {}
    for node in order:
        parents = ordered_parents(graph, node)
        spec = specs[node]
        cols = [index[p] for p in parents]
        x, y = values[:, cols], values[:, index[node]]
        x_f, y_f = x, y  # the rows that inform f
        if incident is not None and parents:
            x_f, y_f = np.vstack([x, incident[:, cols]]), np.concatenate([y, incident[:, index[node]]])
        mech = make_mechanism(spec, is_root=not parents)
        if mech is None:
            mech = select_auto(x_f, y_f, rng)
        elif isinstance(spec, Mechanism):
            mech = _clone(spec)
        mech.fit(x_f, y_f, parents)
        if x_f is not x:
            mech.set_noise(x, y)
        fitted[node] = mech
    return CausalModel(graph, fitted, values, specs, options.seed, options.reference_size, options.joint_noise,
                       options.tail_fraction, incident, options)


def require_model(model: object) -> CausalModel:
    """``model`` if it is a fitted model, else :class:`RCAError`."""
    if not isinstance(model, CausalModel):
        raise RCAError(f"model must be a fitted rca_engine model, got {type(model).__name__}")
    return model


def _clone(mech: Mechanism) -> Mechanism:
    import copy

    return copy.deepcopy(mech)
