"""`whyslow demo`: the product working in one command on a simulated retail website (logic in plugin.demo)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    from plugin.demo.app import add_arguments

    parser = sub.add_parser(
        "demo",
        help="see whyslow find the service that made a request slow, on a simulated retail website",
        description="Start whyslow on a temporary data directory and free loopback ports, send it the "
                    "OpenTelemetry traces of a simulated retail website, inject a fault, and print which "
                    "service made the slowest requests slow. Exit code 0 when the top root cause is the "
                    "injected fault (last line: VERDICT: PASS ...), 1 otherwise.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from plugin.demo.app import run as run_demo

    return run_demo(args)
