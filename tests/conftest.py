"""Shared fixtures. Tests that read ../shared skip cleanly when it is absent (a user's fresh clone)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# As vostool does on import: passive OpenMP waiting keeps small CPU tests fast on a loaded machine
# (test modules may import torch before vostool).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))  # the helper modules: synthetic_videos.py, method_contracts.py

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOSTOOL_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared reference folder; skips the test when it does not exist."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"reference data not found at {SHARED} (set VOSTOOL_SHARED)")
    return SHARED


@pytest.fixture()
def one_thread():
    """Run the test with one PyTorch thread (training tests: stable speed on a shared machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO
