"""The demo's story: start whyslow, send normal traffic until it has learned, inject a fault, explain.

Every step talks to the server only through its public interfaces: spans in over OTLP/gRPC, status,
outliers and explanations out over the REST API, exactly as a user's services and Grafana would.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from plugin.demo.client import ApiError, RestClient
from plugin.demo.faults import Fault
from plugin.demo.otlp_export import SpanSender
from plugin.demo.report import (
    answer,
    answer_failure,
    display_name,
    render_explanation,
    render_failure,
    render_regression,
    top_cause,
)
from plugin.demo.simulator import NS, SimTrace, Simulator
from plugin.demo.site import Site

BATCH = 100


def _touches(trace: SimTrace, service: str) -> bool:
    """Whether a simulated request went through ``service`` (its spans, or a call to it)."""
    return any(s.service == service or s.attributes.get("peer.service") == service for s in trace.spans())


class DemoError(RuntimeError):
    """A step of the demo could not be completed (message for the user)."""


@dataclass
class DemoOptions:
    """Sizes and pacing of a demo run (command-line options)."""

    seed: int = 7
    warmup_traces: int = 600
    fault_traces: int = 10
    rate: float = 20.0  # simulated requests per second
    explain: int = 3  # how many of the slowest detected traces to explain
    timeout_s: float = 120.0  # per waiting step
    progress: bool = True


@dataclass
class DemoResult:
    """What the run found: explained traces and the verdict."""

    fault: Fault
    explained: list[dict[str, Any]] = field(default_factory=list)
    top_services: list[str | None] = field(default_factory=list)
    detected_faulty: int = 0
    passed: bool = False
    verdict: str = ""
    regression_query: dict[str, Any] | None = None  # the GET /api/v1/regression query of --regression


def _progress(total: int, desc: str, enabled: bool, out: TextIO) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", disable=not enabled, file=out, leave=True,
                dynamic_ncols=True, mininterval=0.2)


class DemoRun:
    """One run of the story against a started server (``client``) and an OTLP span sender."""

    def __init__(self, site: Site, sender: SpanSender, client: RestClient, options: DemoOptions,
                 out: TextIO = sys.stdout, clock: Callable[[], int] = time.time_ns) -> None:
        self.site = site
        self.sender = sender
        self.client = client
        self.options = options
        self.out = out
        self.sim = Simulator(site, seed=options.seed, rate=options.rate)
        self.names = {s.name: s.display for s in site.services.values()}
        # simulated history ends near now: it starts as far in the past as the requests will take to arrive
        history_ns = int((options.warmup_traces + options.fault_traces) / options.rate * NS)
        self.sim_clock_ns = clock() - history_ns - 5 * NS
        self.history_start_ms = self.sim_clock_ns // 1_000_000
        self.faulty_ids: dict[str, SimTrace] = {}
        self.sent_ids: set[str] = set()  # this run's traces (a kept --data-dir holds earlier runs' outliers too)
        self.sent_traces = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # --- traffic ------------------------------------------------------------------------------------
    def send(self, n: int, fault: Fault | None, desc: str) -> list[tuple[str, SimTrace]]:
        """Simulate ``n`` requests (with ``fault`` or normal) and export them, with a progress bar."""
        sent: list[tuple[str, SimTrace]] = []
        with _progress(n, desc, self.options.progress, self.out) as bar:
            left = n
            while left > 0:
                k = min(BATCH, left)
                traces = self.sim.generate(k, self.sim_clock_ns, fault)
                self.sim_clock_ns = traces[-1].start_ns  # arrivals go on from the last one (Poisson process)
                ids = self.sender.record(traces)
                self.sender.flush()
                self.sent_ids.update(ids)
                sent.extend(zip(ids, traces, strict=True))
                left -= k
                bar.update(k)
        self.sent_traces += n
        return sent

    # --- waiting on the server ----------------------------------------------------------------------
    def _wait(self, what: str, check: Callable[[], bool], timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.options.timeout_s)
        while True:
            try:
                if check():
                    return
            except ApiError as exc:
                if time.monotonic() > deadline:
                    raise DemoError(f"timed out waiting for {what}: {exc}") from None
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout_s or self.options.timeout_s:.0f} s waiting for {what}")
            time.sleep(0.2)

    def detector_counters(self) -> dict[str, Any]:
        return dict(self.client.status().get("detector") or {})

    def wait_processed(self, what: str) -> None:
        """Until the server has scored every trace sent so far and explained every outlier it found:
        nothing pending in its detector, and the same counters on two polls in a row (a trace still being
        assembled by the collector is not pending yet)."""

        last: list[dict[str, Any]] = []

        def done() -> bool:
            c = self.detector_counters()
            settled = int(c.get("pending", 1)) == 0 and int(c.get("traces", 0)) >= self.sent_traces
            stable = settled and bool(last) and last[-1] == c
            last[:] = [c]
            return stable

        self._wait(what, done)

    def wait_model(self) -> dict[str, Any]:
        """Until the model of the site's entry point is fitted; returns its status."""
        found: dict[str, Any] = {}

        def ready() -> bool:
            state, model = self.client.model_state()
            if model and model.get("last_error") and state != "ready":
                raise DemoError(f"the server could not fit its model: {model['last_error']}")
            if state == "ready" and model is not None:
                found.update(model)
                return True
            return False

        started = time.monotonic()
        with _progress(1, "learning what normal looks like", self.options.progress, self.out) as bar:
            self._wait("the model to be fitted", ready)
            bar.update(1)
        found.setdefault("wait_s", time.monotonic() - started)
        return found

    # --- the story ----------------------------------------------------------------------------------
    def run(self, fault: Fault) -> DemoResult:
        o = self.options
        site = self.site
        self.say(f"Simulated retail site: {len(site.services)} services "
                 f"({', '.join(s.display for s in site.services.values())}).")
        self.say(f"1. Normal traffic: {o.warmup_traces} page loads of {display_name(site.entry, self.names)} "
                 f"sent as OpenTelemetry spans over OTLP/gRPC.")
        normal = self.send(o.warmup_traces, None, "normal traffic")
        durations = sorted(t.duration_s for _, t in normal)
        median_s = durations[len(durations) // 2]
        self.wait_processed("the normal traffic to be processed")
        model = self.wait_model()
        self.say(f"   whyslow learned the site from {model.get('rows', '?')} requests "
                 f"(median page load {median_s:.2f} s).")
        self.say(f"2. Fault injected: {fault.describe(site)}; {o.fault_traces} more page loads.")
        faulty = self.send(o.fault_traces, fault, "faulty traffic")
        self.faulty_ids = dict(faulty)
        self.wait_processed("the faulty requests to be scored and explained")
        self.say(self.span_accounting())
        return self.explain(fault)

    def span_accounting(self) -> str:
        """What the server did with the spans sent: every one accepted, or the counts of those it did not keep."""
        stats = self.client.status().get("pipeline") or {}
        sent = self.sender.sent_spans
        accepted = int(stats.get("spans_accepted", 0))
        lost = {k: int(stats.get(k, 0)) for k in ("spans_rejected", "spans_refused", "spans_dropped")}
        if accepted >= sent and not any(lost.values()):
            return f"   All {sent:,} spans sent over OTLP were accepted by whyslow."
        detail = ", ".join(f"{v:,} {k.removeprefix('spans_')}" for k, v in lost.items() if v)
        return f"   whyslow accepted {accepted:,} of the {sent:,} spans sent" + (f" ({detail})." if detail else ".")

    def explain(self, fault: Fault) -> DemoResult:
        result = DemoResult(fault)
        kind = "error" if fault.is_errors else "latency"
        what = "failed" if fault.is_errors else "slow"
        outliers = [o for o in self.client.outliers(limit=1000, from_ms=self.history_start_ms, kind=kind)
                    if o.get("trace_id") in self.sent_ids]
        detected = [o for o in outliers if o.get("trace_id") in self.faulty_ids]
        result.detected_faulty = len(detected)
        false_alarms = len(outliers) - len(detected)
        touched = sum(1 for t in self.faulty_ids.values() if _touches(t, fault.service))
        reach = "" if touched == len(self.faulty_ids) else (
            f" ({touched} of them went through {display_name(fault.service, self.names)})")
        self.say(f"3. whyslow flagged {len(outliers)} {what} requests as outliers: {len(detected)} of the "
                 f"{len(self.faulty_ids)} requests sent during the fault{reach}"
                 + (f", and {false_alarms} normal ones." if false_alarms else "."))
        slowest = sorted(outliers, key=lambda o: -float(o.get("target_latency_ms") or 0.0))[: self.options.explain]
        if not slowest:
            result.verdict = (f"VERDICT: FAIL no outlier detected after injecting {fault.name} "
                              f"({display_name(fault.service, self.names)})")
            return result
        if fault.is_errors:
            self.say(f"   {len(slowest)} of them, explained (contributions in nats to how unusual the failure is):")
        else:
            self.say(f"   The {len(slowest)} slowest, explained (contributions in nats to how unusual the latency is):")
        for o in slowest:
            payload = self.client.rca(str(o["trace_id"]), kind=kind)
            result.explained.append(payload)
            cause = top_cause(payload)
            result.top_services.append(str(cause["service"]) if cause else None)
            self.say()
            self.say(render_failure(payload, self.names) if fault.is_errors else render_explanation(payload, self.names))
        self.say()
        self.say((answer_failure if fault.is_errors else answer)(result.explained[0], self.names))
        matches = sum(1 for s in result.top_services if s == fault.service)
        injected = display_name(fault.service, self.names)
        top = result.top_services[0]
        top_name = display_name(top, self.names) if top else "nothing"
        result.passed = matches * 2 > len(result.top_services)
        if result.passed:
            result.verdict = (f"VERDICT: PASS top root cause {injected} matches injected fault "
                              f"({matches}/{len(result.top_services)} {'failed' if fault.is_errors else 'slowest'} traces)")
        else:
            result.verdict = (f"VERDICT: FAIL top root cause {top_name} does not match injected fault {injected} "
                              f"({matches}/{len(result.top_services)} {'failed' if fault.is_errors else 'slowest'} traces)")
        return result

    # --- the regression story ------------------------------------------------------------------------
    def run_regression(self, fault: Fault, stat: str = "p99") -> DemoResult:
        """Normal traffic, then a permanent degradation (every request with the fault), then which services moved
        ``stat`` of the page load between the two periods (``GET /api/v1/regression``)."""
        o = self.options
        site = self.site
        entry_name = display_name(site.entry, self.names)
        self.say(f"Simulated retail site: {len(site.services)} services "
                 f"({', '.join(s.display for s in site.services.values())}).")
        self.say(f"1. Normal traffic: {o.warmup_traces} page loads of {entry_name} sent as OpenTelemetry spans.")
        normal = self.send(o.warmup_traces, None, "normal traffic")
        fault_start_ms = self.sim_clock_ns // 1_000_000 + 1
        self.say(f"2. Permanent degradation from then on: {fault.describe(site)}; {o.fault_traces} page loads.")
        degraded = self.send(o.fault_traces, fault, "degraded traffic")
        end_ms = max(t.start_ns for _, t in degraded) // 1_000_000 + 1
        self._wait("the traces to be stored", lambda: self.client.traces_stored() >= self.sent_traces)
        self.say(self.span_accounting())
        query = {"from": fault_start_ms, "to": end_ms, "baseline_from": normal[0][1].start_ns // 1_000_000,
                 "baseline_to": fault_start_ms, "stat": stat}
        payload = self.client.regression(**query)
        self.say(f"3. Why did {stat} of {entry_name} change? whyslow compared the {payload['window']['traces']} "
                 f"degraded requests with the {payload['baseline']['traces']} before them "
                 f"(GET /api/v1/regression, {payload['seconds']:.2f} s):")
        self.say(render_regression(payload, self.names))
        result = DemoResult(fault, regression_query=query)
        services = [s["service"] for s in payload.get("services", [])] if payload.get("significant") else []
        result.top_services = services[:1]
        injected = display_name(fault.service, self.names)
        result.passed = bool(services) and services[0] == fault.service
        if result.passed:
            result.verdict = (f"VERDICT: PASS the regression of {stat} is attributed first to {injected}, the "
                              f"injected fault ({payload['services'][0]['contribution']:+.0f} ms)")
        else:
            top = display_name(services[0], self.names) if services else "nothing"
            result.verdict = (f"VERDICT: FAIL the regression of {stat} is attributed first to {top}, not to the "
                              f"injected fault {injected}")
        return result

    def keep_serving(self, duration_s: float | None, on_tick: Callable[[], None] | None = None,
                     stop: Callable[[], bool] | None = None) -> None:
        """Go on sending normal traffic in real time (at the configured rate) until ``duration_s`` passes or
        ``stop()`` says so (the CLI's Ctrl-C / SIGTERM flag, checked between requests so that an export is never
        cut in the middle); ``None`` means until stopped."""
        end = None if duration_s is None else time.monotonic() + duration_s
        stop = stop or (lambda: False)
        sim = self.sim
        next_at = time.monotonic()
        while (end is None or time.monotonic() < end) and not stop():
            now_ns = time.time_ns()
            traces = sim.generate(1, now_ns - 5 * NS)  # a request of ~1-3 s that has just finished
            self.sender.record(traces)
            self.sender.flush()
            self.sent_traces += 1
            if on_tick:
                on_tick()
            next_at += 1.0 / sim.rate
            pause_until = time.monotonic() + max(0.0, min(next_at - time.monotonic(), 1.0))
            while not stop() and (left := pause_until - time.monotonic()) > 0:
                time.sleep(min(left, 0.05))
