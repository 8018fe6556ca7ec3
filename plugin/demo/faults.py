"""Faults the demo can inject into the simulated site, and how to name them on the command line.

Four kinds, the first three added on top of the normal random latency of every faulty request:
- ``slow service``: the service's own work takes ``delay`` seconds longer;
- ``slow database``: every query to the database takes ``delay`` seconds longer;
- ``network delay``: the network on the way into the service adds ``delay`` seconds to every call;
- ``errors`` (``errors:<service>``): the service fails on every faulty request (HTTP 500, an exception event,
  status ERROR, answered at once); its direct caller retries one in three times and recovers (a handled error),
  otherwise every caller up to the entry point fails with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugin.demo.site import Site

DEFAULT_FAULT = "caching-service"
DEFAULT_DELAY_S = 2.0
NETWORK_PREFIX = "net:"
ERRORS_PREFIX = "errors:"
HANDLED_SHARE = 1 / 3  # of the faulty requests, those whose caller retries the failed call and recovers


class FaultError(ValueError):
    """An unknown fault name or a bad delay."""


@dataclass(frozen=True)
class Fault:
    """One injectable fault; ``service`` is the service an explanation must blame for it."""

    name: str  # command-line name: "<service>" or "net:<service>"
    kind: str  # "slow service" | "slow database" | "network delay" | "errors"
    service: str
    delay_s: float = DEFAULT_DELAY_S

    @property
    def is_network(self) -> bool:
        return self.kind == "network delay"

    @property
    def is_errors(self) -> bool:
        return self.kind == "errors"

    def describe(self, site: Site) -> str:
        display = site.service(self.service).display
        if self.is_errors:
            return (f"{display} fails (HTTP 500, an exception) on every request; one in "
                    f"{round(1 / HANDLED_SHARE)} times its caller retries and recovers")
        if self.kind == "network delay":
            callers = ", ".join(site.service(c).display for c in site.callers_of(self.service))
            return f"network delay of +{self.delay_s:g} s on calls from {callers} to {display}"
        if self.kind == "slow database":
            return f"{display} answers every query {self.delay_s:g} s slower"
        return f"{display} spends {self.delay_s:g} s longer on its own work"


def available_faults(site: Site, delay_s: float = DEFAULT_DELAY_S) -> list[Fault]:
    """Every fault of the site: each service slowed down, and a network delay on the calls into each callee."""
    faults: list[Fault] = []
    for s in site.services.values():
        faults.append(Fault(s.name, "slow database" if s.is_db else "slow service", s.name, delay_s))
    for s in site.services.values():
        if not s.is_db and s.name != site.entry:
            faults.append(Fault(NETWORK_PREFIX + s.name, "network delay", s.name, delay_s))
    for s in site.services.values():
        if not s.is_db and s.name != site.entry:
            faults.append(Fault(ERRORS_PREFIX + s.name, "errors", s.name, delay_s))
    return faults


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum() or ch == ":")


def resolve_fault(site: Site, name: str, delay_s: float = DEFAULT_DELAY_S) -> Fault:
    """The fault named ``name`` (service name or display name, optionally ``net:`` prefixed; case and
    punctuation ignored), or :class:`FaultError` listing the valid names."""
    if not (delay_s > 0 and delay_s < 3600):
        raise FaultError(f"fault delay must be a positive number of seconds below 3600, got {delay_s!r}")
    wanted = _key(name)
    network = wanted.startswith(NETWORK_PREFIX)
    errors = wanted.startswith(ERRORS_PREFIX)
    bare = wanted[len(NETWORK_PREFIX):] if network else wanted[len(ERRORS_PREFIX):] if errors else wanted
    for fault in available_faults(site, delay_s):
        s = site.service(fault.service)
        if fault.is_network == network and fault.is_errors == errors and bare in (_key(s.name), _key(s.display)):
            return fault
    names = ", ".join(f.name for f in available_faults(site))
    raise FaultError(f"unknown fault {name!r}; choose one of: {names}")
