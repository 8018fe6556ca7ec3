"""rca_engine: causal structure-based root cause analysis of outliers (Budhathoki et al., ICML 2022).

Fit an additive-noise structural causal model on a cause -> effect DAG, score outliers with information-theoretic
scores and attribute an outlier of a target node to the noise of every upstream node with Shapley values.
"""

from .attribution import (
    Attributor,
    Explanation,
    attribute,
    attribute_many,
    bootstrap_intervals,
    outlier_scores,
)
from .errors import DataError, GraphError, MechanismError, NotEnoughDataError, RCAError, UnknownNodeError
from .failures import FailureExplanation, FailureModel, attribute_failure, failure_scores, fit_failures
from .graph import graph_from_edges, invert_call_graph, upstream_order, validate_graph
from .mechanisms import (
    MECHANISM_NAMES,
    AdditiveMechanism,
    EmpiricalMechanism,
    LinearMechanism,
    MaxMechanism,
    Mechanism,
    NonlinearMechanism,
    SumMechanism,
)
from .model import CausalModel, fit
from .scoring import BASE_SCORES, ITScorer

__all__ = [
    "BASE_SCORES",
    "MECHANISM_NAMES",
    "AdditiveMechanism",
    "Attributor",
    "CausalModel",
    "DataError",
    "EmpiricalMechanism",
    "Explanation",
    "FailureExplanation",
    "FailureModel",
    "GraphError",
    "ITScorer",
    "LinearMechanism",
    "MaxMechanism",
    "Mechanism",
    "MechanismError",
    "NonlinearMechanism",
    "NotEnoughDataError",
    "RCAError",
    "SumMechanism",
    "UnknownNodeError",
    "attribute",
    "attribute_failure",
    "attribute_many",
    "bootstrap_intervals",
    "failure_scores",
    "fit",
    "fit_failures",
    "graph_from_edges",
    "invert_call_graph",
    "outlier_scores",
    "upstream_order",
    "validate_graph",
]
