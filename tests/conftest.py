"""Shared fixtures. The tests mirror the code (tests/rca_engine, tests/collector_processor, tests/plugin,
tests/grafana_panel, tests/deploy); helpers that tests import live in tests/support (never in another test
file or a conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.datasets import TEST_OUTPUT


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT
