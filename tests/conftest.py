"""Shared test fixtures: one thread (CI has 2 cores), the shared datasets folder."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the real-data tests need ../shared/datasets beside the repo")
    return SHARED
