"""Flow tests run real Prefect against a temporary local API (one per test session), and each
test persists results in storage of its own, so no test reuses another's results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(autouse=True)
def result_storage(tmp_path: Path) -> Iterator[Path]:
    storage = tmp_path / "prefect-storage"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        yield storage
