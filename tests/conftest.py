"""Shared test setup: real MNIST from ../shared/data (override with KHRBM_DATA_DIR)."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
os.environ.setdefault("KHRBM_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ["KHRBM_DATA_DIR"])
    assert (path / "mnist").is_dir() or any(path.glob("*idx3*")), f"real MNIST expected in {path}"
    return path
