"""Settings with one home: environment variables prefixed PROMPTDAG_, read at call time."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """promptdag's settings (API keys stay in the SDKs' own variables)."""

    model_config = SettingsConfigDict(env_prefix="PROMPTDAG_", extra="ignore")

    model: str | None = Field(None, description="Default model when a spec names none.")
    quiet_prefect: bool = Field(
        True, description="Keep Prefect's console logs (and offline telemetry noise) off the CLI."
    )


def get_settings() -> Settings:
    return Settings()
