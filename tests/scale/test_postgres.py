"""Where PostgreSQL cannot run, the scale tests skip and say what to install."""

from __future__ import annotations

import pytest

from benchmarks import postgres


def test_no_postgresql_is_a_reason_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "postgres_bin", lambda: None)
    with pytest.raises(postgres.PostgresUnavailable, match="install Debian's `postgresql`"):
        postgres.PostgresCluster()
