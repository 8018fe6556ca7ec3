"""Operation names of span types: the stable part of a span's name, with ids and numbers stripped."""

from __future__ import annotations

import re

UNKNOWN_SERVICE = "unknown_service"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# long hex runs that contain at least one digit (ids, hashes), but not plain words such as "facade"
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")
# a number standing alone: not glued to a letter, underscore or digit on either side, so that a version
# segment (``v12``, ``http2``) stays whole instead of losing its tail digits
_NUMBER = re.compile(r"(?<![A-Za-z_\d])[-+]?\d+(?:\.\d+)?(?![A-Za-z_\d])")
_SPACES = re.compile(r"\s+")


def normalise_operation(name: str, max_len: int = 200) -> str:
    """Strip uuids, hex ids and numbers from a span name so that one endpoint gives one span type.

    ``GET /users/123/orders/9f86d081884c7d65`` -> ``GET /users/{id}/orders/{id}``; ``/api/v12/x`` keeps ``v12``.
    """
    if not name:
        return "unnamed"
    name = name[: max_len * 4]
    if any(c.isdigit() for c in name):
        name = _UUID.sub("{id}", name)
        name = _HEX.sub("{id}", name)
        name = _NUMBER.sub("{id}", name)
    name = _SPACES.sub(" ", name).strip()
    return name[:max_len] or "unnamed"


def operation_of(name: str, route: str | None, method: str | None, rpc_service: str | None,
                 rpc_method: str | None, max_len: int = 200) -> str:
    """Operation of a span: ``METHOD route`` when ``http.route`` is set, ``service/method`` for RPC,
    else the normalised span name."""
    if route:
        op = f"{method.upper()} {route}" if method else route
        return normalise_operation(op, max_len)
    if rpc_service and rpc_method:
        return normalise_operation(f"{rpc_service}/{rpc_method}", max_len)
    return normalise_operation(name, max_len)


def is_catch_all(op: str) -> bool:
    """A root operation that names no endpoint (``/*``, ``/``, ``GET /**``): a gateway's catch-all route."""
    route = op.rsplit(" ", 1)[-1]
    return "*" in route or route == "/"
