"""`whyslow` command line: one sub-command per module (`plugin/commands/<name>.py`).

Each command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` to a
callable taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("rca", "serve", "demo", "mcp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whyslow",
        description="Causal root-cause attribution of slow traces (OpenTelemetry + Grafana).",
    )
    parser.add_argument("--version", action="version", version=f"whyslow {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"plugin.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"plugin.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _version() -> str:
    """The installed distribution's version (pyproject.toml), without importing the server."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("whyslow")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
