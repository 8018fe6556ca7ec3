"""The shared datasets beside the project root (tests that need one skip when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
TEST_OUTPUT = ROOT / "test-output"


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/datasets/<name>``, or skip the test with the reason when it is not there."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path} (it ships only with the project's CI, not with a clone)")
    return path
