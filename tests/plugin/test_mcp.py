"""`whyslow mcp` driven by the MCP SDK's own client over stdio, against the live shop server (auth on).

The server is the subprocess `python -m plugin.cli mcp --url <serve>` with the token in its environment; the
slow traces the shop sent (payments or cart slowed by 400 ms) must be explained with the slowed service first,
with the numbers the REST API computed; the outlier list and the incident summary must agree with REST too.
The token never appears in the server's stderr or in any answer.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.serve import ROOT

pytest.importorskip("mcp", reason="the MCP SDK (`mcp`, a dependency in pyproject.toml) is not installed")


_SERVER_TOKEN = object()  # default: the live server's own token


def _session(shop: Any, errlog: Any, token: Any = _SERVER_TOKEN, extra: list[str] | None = None) -> Any:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}
    token = shop.srv.token if token is _SERVER_TOKEN else token
    if token:
        env["WHYSLOW_AUTH_TOKEN"] = token
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "plugin.cli", "mcp", "--url", shop.srv.http_url, *(extra or [])],
                                   env=env, cwd=str(ROOT))
    return Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60)


def _run(shop: Any, calls: list[tuple[str, dict[str, Any]]], tmp_path: Path, **kw: Any) -> tuple[list[str], list[str]]:
    """(tool names offered, text of each call's answer), in one stdio session."""

    async def go() -> tuple[list[str], list[str]]:
        with open(tmp_path / "mcp-stderr.log", "w", encoding="utf-8") as errlog:
            async with _session(shop, errlog, **kw) as client:
                tools = [t.name for t in (await client.list_tools()).tools]
                answers = []
                for name, args in calls:
                    result = await client.call_tool(name, args)
                    assert not result.is_error, result
                    answers.append("\n".join(c.text for c in result.content if c.type == "text"))
                return tools, answers

    return asyncio.run(go())


def _ms(text: str) -> float:
    return float(text.replace(",", "").removesuffix(" ms"))


def test_tools_explain_the_slow_traces_as_rest_does(shop: Any, tmp_path: Path) -> None:
    payments, cart = shop.slow["payments"][0], shop.slow["cart"][0]
    tools, answers = _run(shop, [
        ("explain_trace", {"trace_id": payments.trace_id}),
        ("explain_trace", {"trace_id": cart.trace_id.upper()}),
        ("list_outliers", {"since": "now-1h", "limit": 50}),
        ("incident", {"since": "now-1h"}),
        ("explain_trace", {"trace_id": "not-a-trace"}),
        ("explain_trace", {"trace_id": "ab" * 16}),
    ], tmp_path)
    assert {"explain_trace", "list_outliers", "incident"} <= set(tools)
    _, openapi = shop.srv.get("/openapi.json")
    assert ("regression" in tools) == ("/api/v1/regression" in openapi["paths"])  # offered once serve has it

    for sent, service, answer in ((payments, "payments", answers[0]), (cart, "cart", answers[1])):
        status, expl = shop.srv.get(f"/api/v1/traces/{sent.trace_id}/rca")
        assert status == 200 and expl["is_outlier"]
        lines = answer.splitlines()
        assert lines[0].startswith(f"Trace {sent.trace_id} ({expl['entry']}) took ")
        took = re.search(r"took ([\d,.]+ ms)", lines[0])
        assert took and _ms(took.group(1)) == pytest.approx(sent.latency_ms, abs=0.51)
        rarer = re.search(r"rarer than 1 in ([\d,.e+]+) requests", lines[0])
        assert rarer and float(rarer.group(1).replace(",", "")) == pytest.approx(expl["rarer_than"], rel=0.01)
        causes = [ln for ln in lines if re.match(r"^\d\. ", ln)]
        positive = [c for c in expl["contributions"] if c["contribution"] > 0][:3]
        assert len(causes) == len(positive) >= 1
        first = positive[0]
        assert first["service"] == service, expl["contributions"][:3]
        assert f"[{service}]" in causes[0] and f"{100 * first['share']:.0f}%" in causes[0]
        would = re.search(r"would have taken ([\d,.]+ ms)", causes[0])
        assert would and _ms(would.group(1)) == pytest.approx(first["counterfactual_latency_ms"], abs=0.51)
        # the slowed service's extra 400 ms is visible: the latency without it is far lower
        assert sent.latency_ms - _ms(would.group(1)) > 200
        assert f"{shop.srv.http_url}/ui/?traceId={sent.trace_id}" in lines[-1]

    listed = answers[2]
    status, body = shop.srv.get("/api/v1/outliers?from=now-1h&limit=50")
    assert status == 200
    assert listed.startswith(f"{len(body['outliers'])} outlier(s)")
    for o in body["outliers"]:
        assert f"trace {o['trace_id']}" in listed
    for sent in shop.slow["payments"]:
        line = next(ln for ln in listed.splitlines() if f"trace {sent.trace_id}" in ln)
        assert "mostly payments" in line

    status, inc = shop.srv.get("/api/v1/incident?from=now-1h")
    assert status == 200
    ranked = [ln for ln in answers[3].splitlines() if re.match(r"^\d\. ", ln)]
    assert ranked[0].startswith(f"1. {inc['services'][0]['service']}: {100 * inc['services'][0]['share']:.0f}%")
    assert {inc["services"][0]["service"], inc["services"][1]["service"]} == {"payments", "cart"}
    assert answers[3].startswith(f"{inc['outliers']} explained outlier(s)")

    assert "is not a trace id" in answers[4]
    assert "has no trace" in answers[5]
    assert shop.srv.token
    for text in [*answers, (tmp_path / "mcp-stderr.log").read_text()]:
        assert shop.srv.token not in text


def test_without_the_token_the_answer_says_so(shop: Any, tmp_path: Path) -> None:
    _, answers = _run(shop, [("list_outliers", {})], tmp_path, token=None)
    assert "refused the request (401)" in answers[0] and "WHYSLOW_AUTH_TOKEN" in answers[0]


def test_grafana_links_and_bad_arguments(shop: Any, tmp_path: Path) -> None:
    sent = shop.slow["payments"][1]
    _, answers = _run(shop, [("explain_trace", {"trace_id": sent.trace_id})], tmp_path,
                      extra=["--grafana-url", "http://grafana.example:3000/"])
    assert f"Grafana: http://grafana.example:3000/d/whyslow-rca?var-traceId={sent.trace_id}" in answers[0]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    import subprocess

    for args, message in ((["--url", "ftp://x"], "must be http(s)://host:port"),
                          (["--http", "nowhere"], "--http must be host:port"),
                          (["--auth-token-file", str(tmp_path / "missing")], "cannot read --auth-token-file")):
        proc = subprocess.run([sys.executable, "-m", "plugin.cli", "mcp", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_readme_client_snippet_is_a_valid_command() -> None:
    import json

    from plugin.cli import build_parser

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", text, flags=re.S) if "mcpServers" in b]
    server = json.loads(block)["mcpServers"]["whyslow"]
    assert server["command"].endswith("/whyslow")
    args = build_parser().parse_args(server["args"])
    assert args.command == "mcp" and args.http is None  # stdio, as such clients launch it
    assert "WHYSLOW_AUTH_TOKEN" in server["env"]


def test_regression_tool_is_offered_and_answers_when_the_route_exists() -> None:
    """A stand-in server with the regression route of the REST contract (GET /api/v1/regression)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from plugin.mcp_rest import WhySlowREST
    from plugin.mcp_tools import TOOLS, Links, available, call

    answer = {
        "entry": "frontend:GET /checkout", "stat": "p99", "unit": "ms", "baseline_value": 120.0,
        "comparison_value": 310.0, "observed_change": 190.0, "modelled_change": 182.5, "unexplained": 7.5,
        "noise_floor": 12.0, "significant": True, "change_interval": [160.0, 205.0],
        "contributions": [], "services": [
            {"rank": 1, "service": "payments", "contribution": 171.0, "nodes": ["payments:POST /pay"]},
            {"rank": 2, "service": "cart", "contribution": 11.5, "nodes": ["cart:GET /cart", "net:cart:GET /cart"]}],
        "method": "x", "seconds": 0.1, "summary": "", "window": {}, "baseline": {"source": "day_before"},
        "cached": False}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            body = {"paths": {"/api/v1/regression": {}}} if self.path == "/openapi.json" else answer
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rest = WhySlowREST(f"http://127.0.0.1:{server.server_address[1]}")
        tools = {t.name: t for t in available(rest, TOOLS)}
        assert "regression" in tools
        text = call(tools["regression"], rest, Links(rest.base_url), entry="frontend:GET /checkout", stat="p99")
    finally:
        server.shutdown()
        server.server_close()
    assert text.splitlines()[0] == (
        "p99 of frontend:GET /checkout went from 120 ms (baseline, day_before) to 310 ms: +190.0 ms observed, "
        "+182.5 ms explained by the services below; resampling alone moves it by 12.0 ms (a real change).")
    assert text.splitlines()[2] == "1. payments: +171.0 ms (payments:POST /pay)"
    assert any(p.startswith("/api/v1/regression?entry=frontend%3AGET+%2Fcheckout") and "stat=p99" in p for p in seen)


def test_streamable_http_on_loopback(shop: Any, tmp_path: Path) -> None:
    """`--http` serves the same tools over streamable HTTP, on 127.0.0.1 unless told otherwise."""
    import os
    import subprocess
    import time

    from mcp import Client

    from tests.support.serve import free_port

    port = free_port()
    env = dict(os.environ, WHYSLOW_AUTH_TOKEN=shop.srv.token, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "mcp-http.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli", "mcp", "--url", shop.srv.http_url,
                             "--http", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    async def go() -> tuple[list[str], str]:
        async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=60) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("explain_trace", {"trace_id": shop.slow["cart"][1].trace_id})
            return tools, "\n".join(c.text for c in result.content if c.type == "text")

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                tools, text = asyncio.run(go())
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert {"explain_trace", "list_outliers", "incident"} <= set(tools)
    assert re.search(r"^1\. .*\[cart\]", text, flags=re.M), text
    output = (tmp_path / "mcp-http.log").read_text(errors="replace")
    assert f"http://127.0.0.1:{port}/mcp" in output and shop.srv.token not in output
