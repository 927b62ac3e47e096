"""Fixtures of the baseline tests."""
from __future__ import annotations

import pytest
from baseline_toy import toy_frames


@pytest.fixture(scope="module")
def toy():
    return toy_frames()
