"""rca_engine: causal structure-based root cause analysis of outliers (Budhathoki et al., ICML 2022).

Fit an additive-noise structural causal model on a cause -> effect DAG, score outliers with information-theoretic
scores and attribute an outlier of a target node to the noise of every upstream node with Shapley values.
"""

from .attribution import (
    Attributor,
    Explanation,
    WindowExplanation,
    attribute,
    attribute_many,
    attribute_window,
    bootstrap_intervals,
    outlier_scores,
)
from .call_structure import CallEdge
from .distribution_change import RegressionResult, distribution_change
from .errors import DataError, GraphError, MechanismError, NotEnoughDataError, RCAError, UnknownNodeError
from .failure_change import ErrorRateChange, error_rate_change
from .failures import (
    FailureExplanation,
    FailureModel,
    attribute_failure,
    failure_model,
    failure_scores,
    fit_failures,
)
from .graph import graph_from_edges, invert_call_graph, upstream_order, validate_graph
from .mechanisms import (
    MECHANISM_NAMES,
    AdditiveMechanism,
    EmpiricalMechanism,
    LinearMechanism,
    MaxLinearMechanism,
    MaxMechanism,
    Mechanism,
    NonlinearMechanism,
    SumMechanism,
)
from .model import CausalModel, fit
from .options import PRESETS, Options, preset
from .scoring import BASE_SCORES, ITScorer
from .target_stats import TargetStatistic, target_statistic
from .whatif import WhatIfResult, what_if

__all__ = [
    "BASE_SCORES",
    "MECHANISM_NAMES",
    "AdditiveMechanism",
    "Attributor",
    "CallEdge",
    "CausalModel",
    "DataError",
    "ErrorRateChange",
    "EmpiricalMechanism",
    "Explanation",
    "FailureExplanation",
    "FailureModel",
    "GraphError",
    "ITScorer",
    "LinearMechanism",
    "MaxLinearMechanism",
    "MaxMechanism",
    "Mechanism",
    "MechanismError",
    "NonlinearMechanism",
    "NotEnoughDataError",
    "Options",
    "PRESETS",
    "RCAError",
    "RegressionResult",
    "SumMechanism",
    "TargetStatistic",
    "UnknownNodeError",
    "WhatIfResult",
    "WindowExplanation",
    "attribute",
    "attribute_failure",
    "attribute_many",
    "attribute_window",
    "bootstrap_intervals",
    "distribution_change",
    "error_rate_change",
    "failure_model",
    "failure_scores",
    "fit",
    "fit_failures",
    "graph_from_edges",
    "invert_call_graph",
    "outlier_scores",
    "preset",
    "target_statistic",
    "upstream_order",
    "validate_graph",
    "what_if",
]
