"""Flow tests run real Prefect against the session's temporary local API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _use_prefect_api(prefect_api: str) -> Iterator[None]:
    """Every flow test talks to the temporary API (see tests/conftest.py), even when a server
    of another directory's tests was set up in this process after it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield
