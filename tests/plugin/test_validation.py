"""Input validation shared by REST, the JSON data source and gRPC: trace ids as users paste them."""

from __future__ import annotations

import pytest

from plugin import validation
from plugin.errors import InvalidArgument

TID = "8cbfdd6ecbc57ed902ff85e5000e01c3"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (TID, TID),
        (TID.upper(), TID),
        (f"  {TID}\n", TID),
        ("8cbfdd6e-cbc5-7ed9-02ff-85e5000e01c3", TID),
        ("02FF85E5000E01C3", "000000000000000002ff85e5000e01c3"),  # 64-bit id, as OTLP carries it
    ],
)
def test_trace_id_accepts_pasted_forms(given: str, expected: str) -> None:
    assert validation.trace_id(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("zzz", "32 hexadecimal"),
        (TID[:-1], "32 hexadecimal"),
        (TID + "0", "32 hexadecimal"),
        ("8cbfdd6e-cbc5-7ed9-02ff-85e5000e01cz", "32 hexadecimal"),
        ("8cbfdd6e-cbc57ed9-02ff-85e5000e01c3-", "32 hexadecimal"),
        ("0" * 16, "all zeros"),
        ("0" * 32, "all zeros"),
        (12, "32 hexadecimal"),
        (None, "32 hexadecimal"),
    ],
)
def test_trace_id_rejects_others(given: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validation.trace_id(given)
