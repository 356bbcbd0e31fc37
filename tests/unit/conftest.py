"""Fixtures for the unit tests; the builders live in builders.py next to this file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from builders import Fleet, standard_fleet


@pytest.fixture
def fleet() -> Fleet:
    """A fresh standard fleet (see builders.py); change it freely, each test gets its own."""
    return standard_fleet()
