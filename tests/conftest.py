"""Shared fixtures. Helpers that tests import live in plain modules (`tests.datasets`, `tests.serve_helpers`,
`tests.traffic`): a test never imports a conftest, whose module name is not unique across folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datasets import TEST_OUTPUT


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT
