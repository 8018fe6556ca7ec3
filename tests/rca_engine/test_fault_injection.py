"""Synthetic fault injection: random call DAGs, latency = own time + sum/max of callees, one service slowed."""

from __future__ import annotations

import numpy as np

import rca_engine
from rca_engine.synthetic import random_system


def test_top1_accuracy_with_structure_mechanisms() -> None:
    rng = np.random.default_rng(11)
    cases, hits = 20, 0
    for case in range(cases):
        system = random_system(int(rng.integers(5, 10)), rng)
        train = system.simulate(1000, rng)
        fault = str(rng.choice(list(system.causal_graph)))
        outlier = system.simulate(1, rng, fault=fault, add=6 * float(np.exp(system.mu[fault])))
        model = rca_engine.fit(system.causal_graph, train, system.structure)
        expl = rca_engine.attribute(model, system.entry, outlier.iloc[0], seed=case, num_samples=1500)
        hits += expl.root_causes[0] == fault
        assert sum(expl.contributions.values()) == np.float64(expl.outlier_score) or abs(
            sum(expl.contributions.values()) - expl.outlier_score) < 1e-9
    assert hits / cases >= 0.9
