"""Shared fixtures: the repo root, the bundled sample, the real case in ../shared/data."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_CASE = SHARED_DATA / "lung-pet-ct-dx-A0002"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_case() -> Path:
    """../shared/data/lung-pet-ct-dx-A0002 (two series + tumour boxes); skips when absent."""
    if not (REAL_CASE / "ct-b40f").is_dir():
        pytest.skip("../shared/data is absent: real-data tests skipped")
    return REAL_CASE
