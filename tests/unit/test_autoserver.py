"""The user's PREFECT_API_URL wins wherever they set it: promptdag then starts no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptdag.remote.autoserver import configured_api_url, local_server


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PREFECT_HOME and an empty working directory, no Prefect variables set."""
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (tmp_path / "home").mkdir()
    return tmp_path


def test_nothing_configured(place: Path):
    assert configured_api_url(place / "home") is None


def test_the_environment(place: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://env:4200/api")
    assert configured_api_url(place / "home") == "http://env:4200/api"


@pytest.mark.parametrize(("name", "text"), [
    (".env", "OTHER=1\nexport PREFECT_API_URL='http://dotenv:4200/api'\n"),
    ("prefect.toml", '[api]\nurl = "http://dotenv:4200/api"\n'),
    ("pyproject.toml", '[tool.prefect.api]\nurl = "http://dotenv:4200/api"\n'),
])
def test_settings_files_in_the_working_directory(place: Path, name: str, text: str):
    (place / "work" / name).write_text(text)
    assert configured_api_url(place / "home") == "http://dotenv:4200/api"


def test_the_active_profile(place: Path, monkeypatch: pytest.MonkeyPatch):
    (place / "home" / "profiles.toml").write_text(
        'active = "mine"\n[profiles.mine]\nPREFECT_API_URL = "http://profile:4200/api"\n'
        '[profiles.other]\n')
    assert configured_api_url(place / "home") == "http://profile:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    assert configured_api_url(place / "home") is None
    monkeypatch.setenv("PREFECT_PROFILE", "local")  # Prefect's own default profile
    assert configured_api_url(place / "home") == "http://127.0.0.1:4200/api"


def test_a_configured_url_starts_nothing(place: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROMPTDAG_AUTO_SERVER", "true")
    (place / "work" / ".env").write_text("PREFECT_API_URL=http://theirs:4200/api\n")
    said: list[str] = []
    assert local_server(place / "home", start=True, say=said.append) is None
    assert said == [] and not (place / "home" / "promptdag-server.json").exists()
