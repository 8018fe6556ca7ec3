"""Input validation shared by the REST, JSON-datasource and gRPC APIs (one place, one set of rules)."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from decimal import Decimal

from plugin.errors import InvalidArgument

TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
UUID_FORM = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_LIMIT = 1000
MAX_INTERVALS = 200
MAX_ENTRY_LEN = 512
# unix-epoch bounds accepted for time filters: 1970 .. 2200
_MAX_NS = 7_258_118_400 * 10**9


def trace_id(value: object) -> str:
    """A W3C/OTLP trace id: 32 hex characters, not all zero; returned lower-case.

    Also read as users paste them: surrounding blanks, UUID-style dashes, and a 64-bit (16 hex) Zipkin/Jaeger id,
    which OTLP carries left-padded with zeros."""
    if isinstance(value, str):
        value = value.strip()
        if UUID_FORM.match(value):
            value = value.replace("-", "")
        if len(value) == 16 and TRACE_ID.match("0" * 16 + value):
            value = "0" * 16 + value
    if not isinstance(value, str) or not TRACE_ID.match(value):
        raise InvalidArgument("trace id must be 32 hexadecimal characters")
    if int(value, 16) == 0:
        raise InvalidArgument("trace id must not be all zeros")
    return value.lower()


def int_in(value: object, name: str, lo: int, hi: int, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer")
    try:
        number = int(value) if isinstance(value, (int, str)) else None  # a float, list, object: not an integer
    except (TypeError, ValueError):
        number = None
    if number is None or (isinstance(value, float) and not value.is_integer()):
        raise InvalidArgument(f"{name} must be an integer")
    if not lo <= number <= hi:
        raise InvalidArgument(f"{name} must be between {lo} and {hi}")
    return number


def limit(value: object, default: int = 100) -> int:
    return int_in(value, "limit", 1, MAX_LIMIT, default)


def intervals(value: object) -> int:
    """Bootstrap resamples: 0 (none) or 2..MAX_INTERVALS."""
    number = int_in(value, "intervals", 0, MAX_INTERVALS, 0)
    if number == 1:
        raise InvalidArgument(f"intervals must be 0 or between 2 and {MAX_INTERVALS}")
    return number


def score(value: object, name: str = "min_score") -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number")
    try:
        if not isinstance(value, (int, float, str)):
            raise TypeError(type(value).__name__)
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be a number") from None
    if not math.isfinite(number) or number < 0 or number > 1e6:
        raise InvalidArgument(f"{name} must be a finite number >= 0")
    return number


def entry(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_ENTRY_LEN or any(ord(c) < 32 for c in value):
        raise InvalidArgument(f"entry must be a node id string of at most {MAX_ENTRY_LEN} printable characters")
    return value


def kind(value: object) -> str | None:
    """Explanation kind: ``latency`` | ``error``; None (empty) for the default."""
    if value is None or value == "":
        return None
    if value not in ("latency", "error"):
        raise InvalidArgument("kind must be latency or error")
    return str(value)


_RELATIVE = re.compile(r"now(?:-(\d{1,9})([smhdw]))?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def time_ns(value: object, name: str) -> int | None:
    """A time as unix milliseconds (number or digits), an ISO 8601 / RFC 3339 string, or Grafana-style
    relative time (`now`, `now-15m`); returns unix ns."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be unix milliseconds or an ISO 8601 time")
    ns: int | None = None
    if isinstance(value, int):
        ns = value * 1_000_000
    elif isinstance(value, float) and math.isfinite(value):
        ns = int(Decimal(repr(value)) * 1_000_000)  # exact: float products can floor 1 ms low
    elif isinstance(value, str):
        text = value.strip()
        relative = _RELATIVE.fullmatch(text)
        if relative:  # Grafana-style: now, now-15m, now-6h, now-7d
            amount = int(relative.group(1) or 0) * _UNITS[relative.group(2) or "s"]
            return max(0, time.time_ns() - amount * 10**9)
        if re.fullmatch(r"-?\d{1,16}(\.\d+)?", text):
            ns = int(Decimal(text) * 1_000_000)
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                parsed = None
            if parsed is not None:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                ns = int(parsed.timestamp() * 1_000_000) * 1000
    if ns is None:
        raise InvalidArgument(f"{name} must be unix milliseconds, an ISO 8601 time or now[-<n><s|m|h|d|w>]")
    if not 0 <= ns <= _MAX_NS:
        raise InvalidArgument(f"{name} is out of range")
    return ns


def time_range(start: object, end: object) -> tuple[int | None, int | None]:
    lo, hi = time_ns(start, "from"), time_ns(end, "to")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgument("from must not be after to")
    return lo, hi
