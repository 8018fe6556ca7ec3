"""Simulated requests of the retail site as span trees with exact, simulated timestamps.

Time runs faster than real time: nothing sleeps, each request's spans carry the timestamps the request would
have had. Random latencies are drawn for a whole batch of requests at once (numpy), then laid out per request:
a SERVER span spends a share of its own time, runs its call stages one after another (the calls of one stage
in parallel), then spends the rest of its own time. A call to a service is a CLIENT span in the caller that
encloses the callee's SERVER span plus the network delay each way; a call to a database is a CLIENT span
with ``db.system`` whose duration is the database's latency. All arithmetic is in integer nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plugin.demo.faults import HANDLED_SHARE, Fault
from plugin.demo.site import Call, Site

SERVER = "server"
CLIENT = "client"
NS = 1_000_000_000


@dataclass
class SimSpan:
    """One span: emitted by ``service`` (its resource), of ``kind`` server or client."""

    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, str | int] = field(default_factory=dict)
    children: list[SimSpan] = field(default_factory=list)
    error: bool = False  # status ERROR (HTTP 500)
    events: list[str] = field(default_factory=list)  # event names ("exception" where the failure originated)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def walk(self) -> list[SimSpan]:
        """This span and all its descendants, parents before children."""
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out


@dataclass
class SimTrace:
    """One simulated page load; ``faulty`` when the injected fault was active for it."""

    root: SimSpan
    faulty: bool

    @property
    def start_ns(self) -> int:
        return self.root.start_ns

    @property
    def duration_s(self) -> float:
        return self.root.duration_ns / NS

    def spans(self) -> list[SimSpan]:
        return self.root.walk()


def _ns(seconds: np.ndarray) -> np.ndarray:
    return np.rint(seconds * NS).astype(np.int64)


@dataclass
class _Draws:
    """Random quantities of a batch: own latency per service, and per call whether it happens and its
    network delays (ns, one array entry per request)."""

    own: dict[str, np.ndarray]
    occurs: dict[tuple[str, str, str | None], np.ndarray]
    net_req: dict[tuple[str, str, str | None], np.ndarray]
    net_resp: dict[tuple[str, str, str | None], np.ndarray]
    failing: str | None = None        # the service failing on every request (an errors fault)
    handled: np.ndarray | None = None  # per request: its caller retries the failed call and recovers


class Simulator:
    """Generates batches of simulated requests of ``site``; reproducible from ``seed``.

    ``rate`` is the arrival rate of requests (per simulated second, Poisson arrivals).
    """

    def __init__(self, site: Site, seed: int = 0, rate: float = 20.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        site.validate()
        self.site = site
        self.rate = float(rate)
        self.rng = np.random.default_rng(seed)

    def _calls(self) -> list[tuple[str, Call]]:
        return [(s.name, c) for s in self.site.services.values() for stage in s.stages for c in stage]

    def _draw(self, n: int, fault: Fault | None) -> _Draws:
        own = {}
        for s in self.site.services.values():
            own[s.name] = _ns(s.own.sample(n, self.rng))
        occurs, req, resp = {}, {}, {}
        for caller, c in self._calls():
            key = (caller, c.callee, c.db_operation)
            occurs[key] = self.rng.random(n) < c.probability if c.probability < 1 else np.ones(n, dtype=bool)
            req[key] = _ns(self.site.network.sample(n, self.rng))
            resp[key] = _ns(self.site.network.sample(n, self.rng))
        if fault is not None and fault.is_errors:
            return _Draws(own, occurs, req, resp, fault.service, self.rng.random(n) < HANDLED_SHARE)
        if fault is not None:
            extra = int(round(fault.delay_s * NS))
            if fault.is_network:
                for (_caller, callee, _op), arr in req.items():
                    if callee == fault.service:
                        arr += extra
            else:
                own[fault.service] = own[fault.service] + extra
        return _Draws(own, occurs, req, resp)

    def arrivals(self, n: int, start_ns: int) -> np.ndarray:
        """Start times (ns) of ``n`` requests arriving after ``start_ns`` at the configured rate."""
        gaps = self.rng.exponential(1.0 / self.rate, size=n)
        return start_ns + _ns(np.cumsum(gaps))

    def generate(self, n: int, start_ns: int, fault: Fault | None = None) -> list[SimTrace]:
        """``n`` requests arriving after ``start_ns``; with ``fault`` every one of them suffers it."""
        if n <= 0:
            return []
        starts = self.arrivals(n, start_ns)
        draws = self._draw(n, fault)
        return [
            SimTrace(self._server(self.site.entry, int(starts[i]), i, draws), fault is not None) for i in range(n)
        ]

    def _server(self, name: str, t0: int, i: int, d: _Draws, retry: bool = False) -> SimSpan:
        s = self.site.service(name)
        own = int(d.own[name][i])
        pre = int(own * s.pre_fraction)
        attrs: dict[str, str | int] = {"http.request.method": s.operation.split(" ", 1)[0],
                                       "http.route": s.route or s.operation.split(" ", 1)[-1],
                                       "http.response.status_code": 200}
        span = SimSpan(name, s.operation, SERVER, t0, t0, attrs)
        if d.failing == name and not retry:  # fails at once, calling nothing (an error-only call)
            span.end_ns = t0 + min(pre, NS // 1000)
            attrs["http.response.status_code"] = 500
            span.error = True
            span.events.append("exception")
            return span
        t = t0 + pre
        for stage in s.stages:
            stage_end = t
            for c in stage:
                key = (name, c.callee, c.db_operation)
                if not d.occurs[key][i]:
                    continue
                child = self._client(name, c, t, i, d, key)
                span.children.append(child)
                if child.error and d.handled is not None and d.handled[i]:  # retried at once, and it works
                    child = self._client(name, c, child.end_ns, i, d, key, retry=True)
                    span.children.append(child)
                span.error |= child.error
                stage_end = max(stage_end, child.end_ns)
            t = stage_end
        span.end_ns = t + (own - pre)
        if span.error:
            attrs["http.response.status_code"] = 500
        return span

    def _client(self, caller: str, c: Call, t: int, i: int, d: _Draws, key: tuple[str, str, str | None],
                retry: bool = False) -> SimSpan:
        callee = self.site.service(c.callee)
        if callee.is_db:
            attrs: dict[str, str | int] = {
                "db.system": callee.db_system or "",
                "db.name": callee.db_name or callee.name,
                "db.operation": (c.db_operation or "").split(" ", 1)[0],
                "db.statement": c.db_statement or "",
                "peer.service": callee.name,
                "server.address": callee.name,
            }
            return SimSpan(caller, c.db_operation or callee.name, CLIENT, t, t + int(d.own[c.callee][i]), attrs)
        server_start = t + int(d.net_req[key][i])
        server = self._server(c.callee, server_start, i, d, retry)
        attrs = {
            "http.request.method": callee.operation.split(" ", 1)[0],
            "peer.service": callee.name,
            "server.address": callee.name,
            "url.full": f"http://{callee.name}{callee.route or ''}",
            "http.response.status_code": 200,
        }
        if server.error:
            attrs["http.response.status_code"] = 500
        return SimSpan(caller, callee.operation, CLIENT, t, server.end_ns + int(d.net_resp[key][i]), attrs,
                       [server], error=server.error)
