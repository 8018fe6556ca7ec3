"""Checks a live answer against the served OpenAPI document (status documented, body matches its schema)."""

from __future__ import annotations

import jsonschema


def check(doc, method: str, template: str, status: int, body) -> None:
    """The status is documented for the operation and the body matches the documented schema."""
    op = doc["paths"][template][method.lower()]
    assert str(status) in op["responses"], (method, template, status, body)
    content = op["responses"][str(status)]["content"]
    if "application/json" in content:
        schema = dict(content["application/json"]["schema"], components=doc["components"])
        jsonschema.Draft202012Validator(schema).validate(body)
    else:
        assert isinstance(body, str)
