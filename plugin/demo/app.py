"""`whyslow demo` end to end: a whyslow server on a temporary data directory and free loopback ports, the
simulated retail site sending it OpenTelemetry spans, the fault, the explanation and a scriptable verdict."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import TextIO

from plugin.demo.client import ApiError, RestClient
from plugin.demo.faults import DEFAULT_DELAY_S, FaultError, available_faults, resolve_fault
from plugin.demo.otlp_export import ExportError, SpanSender, otlp_grpc_exporter
from plugin.demo.runner import DemoError, DemoOptions, DemoResult, DemoRun
from plugin.demo.site import Site, retail_site
from plugin.signals import stop_on_signals

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
REGRESSION_TRACES = 300  # degraded requests sent with --regression (a window needs a few hundred)
SHUTDOWN_LIMIT_S = 30.0  # after Ctrl-C / SIGTERM the demo is gone within this time, whatever hangs


def list_faults(site: Site, out: TextIO) -> None:
    """Print every fault ``--fault`` accepts, with what it does."""
    faults = available_faults(site)
    width = max(len(f.name) for f in faults)
    print("Faults (--fault NAME; service display names work too, e.g. \"Caching Service\"):", file=out)
    for f in faults:
        print(f"  {f.name:<{width}}  {f.kind:<14} {f.describe(site)}", file=out)


def server_config(args: argparse.Namespace, data_dir: str, options: DemoOptions,  # noqa: ANN201
                  errors: bool = False):
    """The server's configuration for a demo run: loopback ports (free ones unless given), the model fitted on
    the warm-up traffic and not refitted while the fault runs, quick trace completion. An errors fault flags
    failures rarer than 1 in ``warmup_traces`` (the server's 1 in 10,000 needs about 5,000 clean requests of
    history before a first failure can be that rare; the demo has seen only its warm-up)."""
    from plugin.config import ServeConfig

    min_traces = max(10, options.warmup_traces)
    threshold = ServeConfig.threshold if args.threshold is None else args.threshold
    if errors and args.threshold is None:
        threshold = min(threshold, math.log(options.warmup_traces))
    return ServeConfig(
        data_dir=data_dir,
        otlp_grpc=args.otlp_grpc,
        otlp_http=args.otlp_http,
        http=args.http,
        grpc=args.grpc,
        min_traces=min_traces,
        window=max(min_traces, 2000),
        refit_interval_s=24 * 3600.0,
        threshold=threshold,
        trace_timeout_s=0.5,
        log_level="warning",
    ).validate()


def _quiet_logs() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the demo described by parsed command-line ``args``; returns the exit code."""
    site = retail_site()
    if args.list_faults:
        list_faults(site, out)
        return EXIT_PASS
    try:
        fault = resolve_fault(site, args.fault, args.fault_delay)
        fault_traces = args.fault_traces
        if fault_traces is None:
            fault_traces = REGRESSION_TRACES if args.regression else 10
        options = DemoOptions(seed=args.seed, warmup_traces=args.warmup_traces, fault_traces=fault_traces,
                              rate=args.rate, explain=args.explain, timeout_s=args.timeout,
                              progress=not args.no_progress)
        _check_options(options)
        if args.duration is not None and not 0 <= args.duration <= 7 * 24 * 3600:
            raise ValueError(f"--duration must be between 0 and 604800 seconds, got {args.duration}")
    except (FaultError, ValueError) as exc:
        print(f"whyslow demo: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from plugin.config import ConfigError
    from plugin.server import WhySlowServer

    _quiet_logs()
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="whyslow-demo-")
        data_dir = tmp
    server = None
    sender = None
    started = time.monotonic()
    try:
        try:
            server = WhySlowServer(server_config(args, data_dir, options, fault.is_errors)).start()
        except ConfigError as exc:
            print(f"whyslow demo: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(f"whyslow demo: cannot start the whyslow server: {exc}", file=sys.stderr)
            print("VERDICT: FAIL the whyslow server could not start", file=out, flush=True)
            return EXIT_FAIL
        base = server.url("http")
        print(f"whyslow is serving on loopback: REST {base}, OTLP/gRPC {server.url('otlp_grpc')}, "
              f"gRPC {server.url('grpc')} (data in {data_dir})", file=out, flush=True)
        sender = SpanSender(site, otlp_grpc_exporter(server.url("otlp_grpc")), seed=options.seed)
        demo = DemoRun(site, sender, RestClient(base), options, out=out)
        result = demo.run_regression(fault, args.stat) if args.regression else demo.run(fault)
        _print_links(result, base, out)
        print(f"Whole run: {time.monotonic() - started:.1f} s.", file=out)
        print(result.verdict, file=out, flush=True)
        if args.keep_running or args.duration is not None:
            how = "until Ctrl-C" if args.duration is None else f"for {args.duration:g} s (Ctrl-C stops earlier)"
            print(f"Still serving {how}, with normal traffic in real time.", file=out, flush=True)
            with stop_on_signals("whyslow demo") as stop:
                demo.keep_serving(args.duration, stop=stop.requested)
            if stop.requested():
                _shutdown_watchdog(SHUTDOWN_LIMIT_S)
                print("stopping", file=out, flush=True)
            print(result.verdict, file=out, flush=True)  # still the last line for scripts
        return EXIT_PASS if result.passed else EXIT_FAIL
    except (DemoError, ExportError, ApiError) as exc:
        print(f"whyslow demo: {exc}", file=sys.stderr)
        print(f"VERDICT: FAIL {exc}", file=out, flush=True)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if sender is not None:
            sender.close()
        if server is not None:
            server.stop(timeout=10.0)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _shutdown_watchdog(limit_s: float) -> None:
    """Once stopping was asked for, the process ends within ``limit_s`` seconds: past that, every thread's stack
    goes to stderr (where the shutdown got stuck) and the process exits with status 1."""

    def expire() -> None:
        print(f"whyslow demo: shutdown took more than {limit_s:g} s; threads:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(EXIT_FAIL)

    timer = threading.Timer(limit_s, expire)
    timer.daemon = True
    timer.start()


def _check_options(o: DemoOptions) -> None:
    if not 50 <= o.warmup_traces <= 100_000:
        raise ValueError(f"--warmup-traces must be between 50 and 100000, got {o.warmup_traces}")
    if not 1 <= o.fault_traces <= 10_000:
        raise ValueError(f"--fault-traces must be between 1 and 10000, got {o.fault_traces}")
    if not 0.1 <= o.rate <= 10_000:
        raise ValueError(f"--rate must be between 0.1 and 10000 requests per second, got {o.rate}")
    if not 1 <= o.explain <= 20:
        raise ValueError(f"--explain must be between 1 and 20, got {o.explain}")
    if not o.timeout_s > 0:
        raise ValueError(f"--timeout must be positive, got {o.timeout_s}")


def _print_links(result: DemoResult, base: str, out: TextIO) -> None:
    print(file=out)
    if result.regression_query is not None:
        print("The same attribution as JSON:", file=out)
        print(f"  {RestClient(base).url('/api/v1/regression', **result.regression_query)}", file=out)
    else:
        print("See the same explanation in the panel's page, or as JSON:", file=out)
    for payload in result.explained[:3]:
        tid = payload.get("trace_id")
        print(f"  {base}/ui/?traceId={tid}", file=out)
        print(f"  {base}/api/v1/traces/{tid}/rca", file=out)
    print(f"  all outliers: {base}/api/v1/outliers   status: {base}/api/v1/status   API: {base}/openapi.json",
          file=out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options."""
    parser.add_argument("--fault", default="caching-service", metavar="NAME",
                        help="fault to inject (see --list-faults) [caching-service]")
    parser.add_argument("--fault-delay", type=float, default=DEFAULT_DELAY_S, metavar="SECONDS",
                        help=f"extra latency the fault adds to every faulty request [{DEFAULT_DELAY_S:g}]")
    parser.add_argument("--list-faults", action="store_true", help="list the faults and exit")
    parser.add_argument("--seed", type=int, default=7, metavar="N", help="random seed of the simulation [7]")
    parser.add_argument("--warmup-traces", type=int, default=600, metavar="N",
                        help="normal requests sent before the fault; the model is fitted on them [600]")
    parser.add_argument("--fault-traces", type=int, default=None, metavar="N",
                        help=f"requests sent while the fault is active [10; {REGRESSION_TRACES} with --regression]")
    parser.add_argument("--regression", action="store_true",
                        help="a permanent degradation instead of a few slow requests: print which services moved "
                             "the page load's statistic (--stat) between the normal and the degraded period")
    parser.add_argument("--stat", default="p99", metavar="STAT",
                        help="with --regression: mean, p50, p90, p95, p99 or any pNN [p99]")
    parser.add_argument("--rate", type=float, default=20.0, metavar="PER_S",
                        help="simulated requests per second (timestamps; sending is not throttled) [20]")
    parser.add_argument("--explain", type=int, default=3, metavar="N",
                        help="explain the N slowest detected requests [3]")
    parser.add_argument("--threshold", type=float, default=None, metavar="NATS",
                        help="IT outlier score (nats) above which a request is flagged [the server's default]")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="give up waiting on the server after this long per step [120]")
    parser.add_argument("--http", default="127.0.0.1:0", metavar="HOST:PORT", help="REST/UI address [127.0.0.1:0 = a free port]")
    parser.add_argument("--grpc", default="127.0.0.1:0", metavar="HOST:PORT", help="gRPC API address [127.0.0.1:0]")
    parser.add_argument("--otlp-grpc", default="127.0.0.1:0", metavar="HOST:PORT", help="OTLP/gRPC receiver address [127.0.0.1:0]")
    parser.add_argument("--otlp-http", default="127.0.0.1:0", metavar="HOST:PORT", help="OTLP/HTTP receiver address [127.0.0.1:0]")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="keep the server's data here (default: a temporary directory, removed at the end)")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the report keep serving (with live normal traffic) until Ctrl-C")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="after the report keep serving this long, then stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
