"""plugin.demo.site: latency distributions, the site's call tree and its validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import halfnorm, truncexpon

from plugin.demo.site import NETWORK, Call, Latency, Service, Site, retail_site


@pytest.mark.parametrize(("latency", "law"), [
    (Latency("truncexpon", scale=0.02, loc=0.005, b=3.0), truncexpon(b=3.0, loc=0.005, scale=0.02)),
    (NETWORK, halfnorm(loc=0.001, scale=0.003)),
])
def test_latencies_follow_their_scipy_law_and_are_reproducible(latency: Latency, law) -> None:
    draws = latency.sample(20_000, np.random.default_rng(0))
    assert draws.min() >= law.support()[0] and draws.mean() == pytest.approx(law.mean(), rel=0.03)
    assert np.quantile(draws, 0.9) == pytest.approx(law.ppf(0.9), rel=0.05)
    np.testing.assert_array_equal(draws, latency.sample(20_000, np.random.default_rng(0)))


def test_the_retail_site_is_valid_and_every_service_but_the_entry_has_a_caller() -> None:
    site = retail_site()
    site.validate()
    for name, service in site.services.items():
        assert site.service(name) is service and service.name == name
        callers = site.callers_of(name)
        assert (callers == []) == (name == site.entry)
        assert service.is_db == (service.db_system is not None)
        if service.is_db:
            assert not service.stages
            assert all(c.db_operation for caller in callers for stage in site.service(caller).stages
                       for c in stage if c.callee == name)
    with pytest.raises(KeyError):
        site.service("nowhere")


def test_validation_names_the_entry_and_database_mistakes() -> None:
    lat = Latency("halfnorm", scale=0.1)
    with pytest.raises(ValueError, match="entry service 'x' is not defined"):
        Site({"a": Service("a", "A", "GET /", lat)}, "x").validate()
    db = Service("d", "D", "", lat, stages=((Call("a"),),), db_system="postgresql")
    with pytest.raises(ValueError, match="database 'd' cannot call other services"):
        Site({"a": Service("a", "A", "GET /", lat, stages=((Call("d", db_operation="SELECT"),),)), "d": db},
             "a").validate()
    shared = Site({"a": Service("a", "A", "GET /", lat, stages=((Call("b"), Call("c")),)),
                   "b": Service("b", "B", "GET /b", lat, stages=((Call("c"),),)), "c": Service("c", "C", "GET /c", lat)},
                  "a")
    shared.validate()  # a service called from two places is fine: no cycle
    assert shared.callers_of("c") == ["a", "b"]
