"""plugin.demo.faults: fault names from the command line, resolved against the site, and the catalogue."""

from __future__ import annotations

import pytest

from plugin.demo.faults import FaultError, available_faults, resolve_fault
from plugin.demo.site import retail_site

SITE = retail_site()


@pytest.mark.parametrize(("name", "kind", "service"), [
    ("caching-service", "slow service", "caching-service"),
    ("Caching Service", "slow service", "caching-service"),
    ("CACHING_SERVICE", "slow service", "caching-service"),
    ("product-db", "slow database", "product-db"),
    ("Order DB", "slow database", "order-db"),
    ("net:shipping-cost", "network delay", "shipping-cost"),
    ("NET:Shipping Cost Service", "network delay", "shipping-cost"),
    ("website", "slow service", "website"),
])
def test_resolve_fault(name, kind, service):
    fault = resolve_fault(SITE, name, 1.5)
    assert (fault.kind, fault.service, fault.delay_s) == (kind, service, 1.5)
    assert fault.describe(SITE)


def test_fault_catalogue_covers_every_service_and_every_call():
    faults = available_faults(SITE)
    assert {f.service for f in faults if not f.is_network} == set(SITE.services)
    network = {f.service for f in faults if f.is_network}
    assert network == {s.name for s in SITE.services.values() if not s.is_db and s.name != SITE.entry}
    assert len({f.name for f in faults}) == len(faults)
    text = resolve_fault(SITE, "net:caching-service").describe(SITE)
    assert "Product Catalogue" in text and "Caching Service" in text


@pytest.mark.parametrize(("name", "delay", "message"), [
    ("payment-service", 2.0, "unknown fault 'payment-service'; choose one of: website"),
    ("net:product-db", 2.0, "unknown fault"),  # databases have no network fault of their own
    ("net:website", 2.0, "unknown fault"),  # nothing calls the entry point
    ("caching-service", 0.0, "positive"),
    ("caching-service", float("nan"), "positive"),
    ("caching-service", 1e9, "below 3600"),
])
def test_bad_fault(name, delay, message):
    with pytest.raises(FaultError, match=message.replace("(", r"\(")):
        resolve_fault(SITE, name, delay)
