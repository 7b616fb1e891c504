"""Flow tests run real Prefect against the session's temporary local API."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _use_prefect_api(prefect_api: str) -> None:
    """Every flow test talks to the temporary API (see tests/conftest.py)."""
