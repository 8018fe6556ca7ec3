"""The simulated retail website: its services, who calls whom, and how long each one works on its own.

The site follows the example of the research whyslow implements (a retail website built from distributed
services, DoWhy's "microservice latencies" notebook): a page load enters at the Website, goes through an
API gateway that authenticates the customer and then asks the product catalogue and the order service in
parallel; the catalogue asks the cache and the shipping-cost service in parallel (the cache falls through
to the product database on a miss) and then reads the customer's preferences from the customer database.

Intrinsic latencies (seconds) are drawn from truncated-exponential and half-normal distributions, as in
that notebook, with this site's own parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import halfnorm, truncexpon


@dataclass(frozen=True)
class Latency:
    """A latency distribution in seconds: ``truncexpon(b, loc, scale)`` or ``halfnorm(loc, scale)``."""

    family: str  # "truncexpon" | "halfnorm"
    scale: float
    loc: float = 0.0
    b: float = 1.0

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws (seconds), reproducible from ``rng``."""
        if self.family == "truncexpon":
            return truncexpon.rvs(b=self.b, loc=self.loc, scale=self.scale, size=n, random_state=rng)
        if self.family == "halfnorm":
            return halfnorm.rvs(loc=self.loc, scale=self.scale, size=n, random_state=rng)
        raise ValueError(f"unknown latency family {self.family!r}")


@dataclass(frozen=True)
class Call:
    """One call from a service to ``callee``; ``probability`` < 1 makes it conditional (a cache miss)."""

    callee: str
    probability: float = 1.0
    db_operation: str | None = None  # span name of the call when the callee is a database
    db_statement: str | None = None


@dataclass(frozen=True)
class Service:
    """A service of the site. ``stages`` run one after another; the calls inside one stage run in parallel.

    Databases have no spans of their own: their callers record a CLIENT span with ``db.system`` whose
    duration is the database's latency (``own``).
    """

    name: str  # OpenTelemetry resource attribute service.name
    display: str  # human name used in the demo's report
    operation: str  # name of the SERVER span (unused for databases)
    own: Latency
    stages: tuple[tuple[Call, ...], ...] = ()
    db_system: str | None = None  # set for databases
    db_name: str | None = None
    route: str | None = None  # http.route of the SERVER span
    pre_fraction: float = 0.6  # share of the own time spent before the first call (the rest after the last)

    @property
    def is_db(self) -> bool:
        return self.db_system is not None


# Network delay of one direction of one call (seconds).
NETWORK = Latency("halfnorm", loc=0.001, scale=0.003)


@dataclass(frozen=True)
class Site:
    """The whole site: services by name and the entry point."""

    services: dict[str, Service]
    entry: str
    network: Latency = field(default=NETWORK)

    def service(self, name: str) -> Service:
        return self.services[name]

    def callers_of(self, name: str) -> list[str]:
        """Services that call ``name`` (in declaration order)."""
        return [
            s.name for s in self.services.values() for stage in s.stages for c in stage if c.callee == name
        ]

    def validate(self) -> None:
        """Every callee exists, databases call nothing, and the call graph is a tree rooted at the entry."""
        if self.entry not in self.services:
            raise ValueError(f"entry service {self.entry!r} is not defined")
        for s in self.services.values():
            if s.is_db and s.stages:
                raise ValueError(f"database {s.name!r} cannot call other services")
            for stage in s.stages:
                for c in stage:
                    if c.callee not in self.services:
                        raise ValueError(f"{s.name!r} calls unknown service {c.callee!r}")
                    if self.services[c.callee].is_db and not c.db_operation:
                        raise ValueError(f"call {s.name!r} -> {c.callee!r} needs a db_operation")
        seen: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise ValueError(f"call cycle through {name!r}")
            seen.add(name)
            for stage in self.services[name].stages:
                for c in stage:
                    visit(c.callee, (*path, name))

        visit(self.entry, ())
        unreachable = set(self.services) - seen
        if unreachable:
            raise ValueError(f"services not reachable from {self.entry!r}: {sorted(unreachable)}")


def retail_site() -> Site:
    """The demo's retail website of ten services (three of them databases)."""
    services = [
        Service(
            "website", "Website", "GET /product/{id}", Latency("truncexpon", b=3.0, scale=0.15),
            stages=((Call("api-gateway"),),), route="/product/{id}",
        ),
        Service(
            "api-gateway", "API Gateway", "GET /api/v1/product-page", Latency("halfnorm", loc=0.15, scale=0.1),
            stages=((Call("auth-service"),), (Call("product-catalog"), Call("order-service"))),
            route="/api/v1/product-page",
        ),
        Service(
            "auth-service", "Auth Service", "POST /auth/verify", Latency("halfnorm", loc=0.05, scale=0.08),
            stages=((Call("customer-db", db_operation="SELECT customers",
                          db_statement="SELECT id, status FROM customers WHERE session = ?"),),),
            route="/auth/verify",
        ),
        Service(
            "product-catalog", "Product Catalogue", "GET /products/{id}", Latency("halfnorm", loc=0.1, scale=0.12),
            stages=(
                (Call("caching-service"), Call("shipping-cost")),
                (Call("customer-db", db_operation="SELECT preferences",
                      db_statement="SELECT currency, region FROM preferences WHERE customer_id = ?"),),
            ),
            route="/products/{id}",
        ),
        Service(
            "caching-service", "Caching Service", "GET /cache/product", Latency("halfnorm", loc=0.05, scale=0.06),
            stages=((Call("product-db", probability=0.5, db_operation="SELECT products",
                          db_statement="SELECT * FROM products WHERE id = ?"),),),
            route="/cache/product",
        ),
        Service(
            "shipping-cost", "Shipping Cost Service", "GET /shipping/quote", Latency("halfnorm", loc=0.1, scale=0.12),
            route="/shipping/quote",
        ),
        Service(
            "order-service", "Order Service", "GET /orders/recent", Latency("halfnorm", loc=0.25, scale=0.12),
            stages=((Call("order-db", db_operation="SELECT orders",
                          db_statement="SELECT * FROM orders WHERE customer_id = ? LIMIT 10"),),),
            route="/orders/recent",
        ),
        Service("product-db", "Product DB", "", Latency("truncexpon", b=8.0, scale=0.12),
                db_system="postgresql", db_name="products"),
        Service("customer-db", "Customer DB", "", Latency("truncexpon", b=6.0, scale=0.06),
                db_system="postgresql", db_name="customers"),
        Service("order-db", "Order DB", "", Latency("truncexpon", b=5.0, scale=0.15),
                db_system="mysql", db_name="orders"),
    ]
    site = Site({s.name: s for s in services}, entry="website")
    site.validate()
    return site
