"""`whyslow mcp`'s server: the tools of `plugin.mcp_tools` on the official MCP Python SDK (`mcp`), over stdio or
streamable HTTP. Each tool's input schema comes from its Python signature (minus the REST client and links)."""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from plugin.mcp_rest import WhySlowREST
from plugin.mcp_tools import TOOLS, Links, Tool, available, call

INSTRUCTIONS = (
    "whyslow explains unusually slow requests of traced services (OpenTelemetry) by causal attribution: which "
    "service caused the extra latency and how much. Use list_outliers or incident for a time window, "
    "explain_trace for one trace id. Quote the causes, times and links as given."
)


def _tool_function(tool: Tool, rest: WhySlowREST, links: Links) -> Any:
    """An async function with the tool's own parameters (the MCP SDK reads its signature for the input schema)."""
    import anyio

    hints = typing.get_type_hints(tool.run)
    params = list(inspect.signature(tool.run).parameters.values())[2:]  # after (rest, links)
    signature = inspect.Signature([p.replace(annotation=hints.get(p.name, p.annotation)) for p in params],
                                  return_annotation=str)

    async def run(**arguments: Any) -> str:
        return await anyio.to_thread.run_sync(functools.partial(call, tool, rest, links, **arguments))

    run.__name__ = tool.name
    run.__doc__ = tool.description
    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {"return": str}
    return run


def build_server(rest: WhySlowREST, links: Links, tools: list[Tool] | None = None) -> Any:
    """An `mcp.server.MCPServer` offering every tool the running `whyslow serve` can answer."""
    from mcp.server import MCPServer

    server = MCPServer("whyslow", instructions=INSTRUCTIONS, log_level="WARNING")
    for tool in available(rest, TOOLS if tools is None else tools):
        server.add_tool(_tool_function(tool, rest, links), name=tool.name, description=tool.description,
                        structured_output=False)
    return server
