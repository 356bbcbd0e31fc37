"""Console tests: a fake engine over the lab-shaped fleet, fresh for each test."""

from __future__ import annotations

import pytest

from tests.ui.fakes import FakeEngine, lab_fleet


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine(lab_fleet())
