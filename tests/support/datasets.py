"""The shared datasets beside the project root: a test that needs one skips on a user's clone (where
``../shared`` does not exist) and fails in CI (``CI=true``), where it is always present, so that a broken data
path can never pass silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
TEST_OUTPUT = ROOT / "test-output"


def in_ci() -> bool:
    """True when running in CI (the CI runner sets ``CI=true``)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_dir(path: Path, what: str) -> Path:
    """``path`` when it is a directory; otherwise fail in CI and skip (with the reason) elsewhere."""
    if path.is_dir():
        return path
    reason = f"{what} not found at {path} (it ships only with the project's CI, not with a clone)"
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so its absence is an error")
    pytest.skip(reason)


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/datasets/<name>`` (skip on a clone without it, fail in CI)."""
    return require_dir(SHARED / name, f"dataset {name!r}")
