"""rca_engine.synthetic: random call systems with one entry point, and latencies that follow their structure."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from rca_engine.synthetic import random_system


@pytest.mark.parametrize("seed", range(5))
def test_random_systems_are_connected_dags_with_one_entry_point(seed: int) -> None:
    system = random_system(8, np.random.default_rng(seed))
    call = system.call_graph
    assert nx.is_directed_acyclic_graph(call) and sorted(call.nodes) == sorted(f"s{i}" for i in range(8))
    assert [v for v in call.nodes if call.in_degree(v) == 0] == ["s0"] == [system.entry]
    assert all(int(a[1:]) < int(b[1:]) for a, b in call.edges)  # a service calls only later services
    assert set(system.causal_graph.edges) == {(b, a) for a, b in call.edges}  # callee latency causes caller's
    assert set(system.structure) == {v for v in call.nodes if call.out_degree(v)}
    assert set(system.structure.values()) <= {"sum", "max"}
    assert all(0.2 <= s <= 0.5 for s in system.sigma.values()) and all(-1 <= m <= 1 for m in system.mu.values())


def test_latency_is_own_time_plus_the_sum_or_max_of_the_callees() -> None:
    system = random_system(7, np.random.default_rng(3), p_parallel=0.5)
    rows = system.simulate(2000, np.random.default_rng(4))
    assert len(rows) == 2000 and set(rows.columns) == set(system.call_graph.nodes)
    for caller, how in system.structure.items():
        callees = rows[list(system.call_graph.successors(caller))]
        combined = callees.sum(axis=1) if how == "sum" else callees.max(axis=1)
        own = rows[caller] - combined
        assert (own > 0).all()  # log-normal own time
        np.testing.assert_allclose(np.log(own).mean(), system.mu[caller], atol=0.05)
        np.testing.assert_allclose(np.log(own).std(), system.sigma[caller], rtol=0.1)
    leaves = [v for v in system.call_graph.nodes if v not in system.structure]
    for leaf in leaves:
        np.testing.assert_allclose(np.log(rows[leaf]).mean(), system.mu[leaf], atol=0.05)


def test_a_fault_changes_the_own_time_of_its_service_only() -> None:
    system = random_system(6, np.random.default_rng(5))
    leaf = next(v for v in system.call_graph.nodes if system.call_graph.out_degree(v) == 0)
    normal = system.simulate(500, np.random.default_rng(6))
    faulty = system.simulate(500, np.random.default_rng(6), fault=leaf, factor=3.0, add=2.0)
    np.testing.assert_allclose(faulty[leaf], 3.0 * normal[leaf] + 2.0)
    unaffected = set(system.call_graph.nodes) - {leaf} - nx.ancestors(system.call_graph, leaf)
    for v in unaffected:
        np.testing.assert_array_equal(faulty[v], normal[v])
    assert (faulty[system.entry] >= normal[system.entry]).all()
