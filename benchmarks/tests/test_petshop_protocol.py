"""The PetShop protocol reproduces the benchmark's published traversal figures (so our numbers are comparable)."""

from __future__ import annotations

import pytest

from benchmarks.petshop import PUBLISHED, Method, recall, traversal_method
from benchmarks.petshop_data import load_scenario


@pytest.mark.parametrize("scenario", ["low_traffic", "high_traffic"])
def test_traversal_matches_published_recall(shared_dataset, scenario):
    root = shared_dataset("petshop")
    s = load_scenario(root, scenario)
    assert len(s.issues) == 26

    method = Method(lambda g, t, m, n, a: traversal_method(n, a, g, t, search=True))

    published = PUBLISHED["traversal (published [R])"]
    for metric in ("latency", "availability"):
        r = recall(s, method, metric)
        top1, top3 = published[(scenario, metric)]
        assert r.recall(1) == pytest.approx(top1, abs=0.001), (scenario, metric)
        assert r.recall(3) == pytest.approx(top3, abs=0.001), (scenario, metric)
