"""Shared fixtures: one real local Spark session with Delta per test run, the shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OPTIRAG_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared datasets not found at {SHARED_DATA} (set OPTIRAG_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spark():
    from optirag.config import load_config
    from optirag.spark import get_spark

    session = get_spark(load_config("bookcrossing"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def session_lake(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("lake"))
