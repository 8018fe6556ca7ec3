"""The REST client `whyslow mcp` uses to ask a running `whyslow serve` (bearer token kept out of logs and reprs)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from plugin.config import ConfigError


class BackendError(Exception):
    """whyslow serve could not answer; the message is meant for the assistant (and its user)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class WhySlowREST:
    """GETs JSON from one `whyslow serve`; ``token`` goes only into the Authorization header."""

    base_url: str
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"the whyslow URL must be http(s)://host:port, got {self.base_url!r}")
        self.base_url = self.base_url.rstrip("/")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The parsed JSON answer of ``GET path?params`` (None values left out); BackendError otherwise."""
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None and v != ""})
        url = self.base_url + path + (f"?{query}" if query else "")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise BackendError(_error_text(exc), exc.code) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendError(f"cannot reach whyslow serve at {self.base_url}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise BackendError(f"whyslow serve at {self.base_url} answered {path} with something that is not JSON")\
                from None

    def has_route(self, path: str) -> bool:
        """Whether the server's OpenAPI document lists ``path`` (tools for newer endpoints appear only then)."""
        try:
            doc = self.get("/openapi.json")
        except BackendError:
            return False
        return isinstance(doc, dict) and path in doc.get("paths", {})


def _error_text(exc: urllib.error.HTTPError) -> str:
    if exc.code == 401:
        return ("whyslow serve refused the request (401): start `whyslow mcp` with the server's token "
                "(WHYSLOW_AUTH_TOKEN or --auth-token-file)")
    try:
        body = json.loads(exc.read() or b"{}")
        message = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"whyslow serve answered {exc.code}: {message or exc.reason}"
