"""Shared fixtures. Tests that read ../shared skip cleanly when it is absent (a user's fresh clone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOSTOOL_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared reference folder; skips the test when it does not exist."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"reference data not found at {SHARED} (set VOSTOOL_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO
