"""The benchmarks' own tests (their baselines, protocols, aggregations and the fast accuracy subset against the
recorded floors). They use only the ``benchmarks`` package; a needed dataset is skipped on a user's clone and
is an error in CI (``CI=true``), where ``../shared`` is always present."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.common import SHARED


@pytest.fixture(scope="session")
def shared_dataset() -> Callable[[str], Path]:
    """``shared_dataset(name)`` -> path of ``../shared/datasets/<name>``, skipping (clone) or failing (CI)."""

    def find(name: str) -> Path:
        path = SHARED / name
        if path.is_dir():
            return path
        reason = f"dataset {name!r} not found at {path} (it ships only with the project's CI, not with a clone)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{reason}; CI=true, so its absence is an error")
        pytest.skip(reason)

    return find
