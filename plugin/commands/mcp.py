"""`whyslow mcp`: an MCP server (stdio, or streamable HTTP with --http) whose tools ask a running `whyslow serve`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from plugin.config import ConfigError, parse_address

DEFAULT_HTTP = "127.0.0.1:8765"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "mcp",
        help="MCP server for AI assistants: explain slow traces, list outliers, name the service behind an incident",
        description="Model Context Protocol server (stdio by default) whose tools call a running `whyslow serve` "
                    "over REST. The server's bearer token comes from WHYSLOW_AUTH_TOKEN or --auth-token-file "
                    "and is never logged.",
    )
    parser.add_argument("--url", default=os.environ.get("WHYSLOW_URL", "http://127.0.0.1:8080"),
                        help="base URL of `whyslow serve` (env WHYSLOW_URL) [http://127.0.0.1:8080]")
    parser.add_argument("--auth-token-file", metavar="FILE", default=os.environ.get("WHYSLOW_AUTH_TOKEN_FILE"),
                        help="file holding the server's bearer token (or env WHYSLOW_AUTH_TOKEN)")
    parser.add_argument("--http", nargs="?", const=DEFAULT_HTTP, default=None, metavar="HOST:PORT",
                        help=f"serve MCP over streamable HTTP at http://HOST:PORT/mcp instead of stdio "
                             f"[{DEFAULT_HTTP}]")
    parser.add_argument("--ui-url", default=None,
                        help="base URL of the panel page in links (default: --url; a proxy's address otherwise)")
    parser.add_argument("--grafana-url", default=os.environ.get("WHYSLOW_GRAFANA_URL"),
                        help="Grafana base URL: answers also link the whyslow-rca dashboard (env WHYSLOW_GRAFANA_URL)")
    parser.set_defaults(func=run)


def read_token(path: str | None, env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The bearer token from a file or WHYSLOW_AUTH_TOKEN (ConfigError on an unreadable or malformed one)."""
    value = env.get("WHYSLOW_AUTH_TOKEN") or None
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --auth-token-file {path!r}: {exc.strerror}") from None
    if value is not None and (not value.strip() or any(ch.isspace() for ch in value.strip())):
        raise ConfigError("the auth token must be non-empty and contain no whitespace")
    return value.strip() if value else None


def run(args: argparse.Namespace) -> int:
    from plugin.mcp_rest import WhySlowREST
    from plugin.mcp_tools import Links

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # stdout carries the protocol
    try:
        rest = WhySlowREST(args.url, read_token(args.auth_token_file))
        links = Links(ui_base=WhySlowREST(args.ui_url or args.url).base_url,
                      grafana_url=args.grafana_url.rstrip("/") if args.grafana_url else None)
        listen = parse_address(args.http, "--http") if args.http else None
    except ConfigError as exc:
        print(f"whyslow mcp: error: {exc}", file=sys.stderr)
        return 2
    try:
        from plugin.mcp_server import build_server
    except ModuleNotFoundError as exc:
        print(f"whyslow mcp: error: the MCP SDK is missing ({exc.name}); pip install mcp", file=sys.stderr)
        return 1
    server = build_server(rest, links)
    if listen is None:
        server.run("stdio")
    else:
        host, port = listen
        print(f"whyslow mcp: streamable HTTP on http://{host}:{port}/mcp (whyslow serve at {rest.base_url})",
              file=sys.stderr)
        server.run("streamable-http", host=host, port=port)
    return 0
