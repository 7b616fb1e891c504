"""Settings with one home: environment variables prefixed PROMPTDAG_, read at call time."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProviderLimit(BaseModel):
    """A limit on one provider's requests that holds across concurrent flow runs (it lives in
    the Prefect server as global concurrency limits `promptdag:<provider>` and
    `promptdag:<provider>:rate`)."""

    max_in_flight: int | None = Field(None, ge=1, description="Requests in flight at once.")
    requests_per_second: float | None = Field(None, gt=0, description="Requests started a second.")


class Settings(BaseSettings):
    """promptdag's settings (API keys stay in the SDKs' own variables or Prefect Secret blocks)."""

    model_config = SettingsConfigDict(env_prefix="PROMPTDAG_", extra="ignore")

    model: str | None = Field(None, description="Default model when a spec names none.")
    quiet_prefect: bool = Field(
        True, description="Keep Prefect's console logs (and offline telemetry noise) off the CLI."
    )
    auto_server: bool = Field(
        True,
        description="With no PREFECT_API_URL, start a local Prefect server in the background "
        "on the first run and reuse it (runs take ~2 s and show in its UI); false: Prefect's "
        "temporary API for each run (promptdag/remote/autoserver.py).",
    )
    server_port: int = Field(
        4200,
        ge=1,
        le=65535,
        description="Port of the local Prefect server started in the background (and of "
        "`promptdag server start` without --port); a free port is taken when it is in use.",
    )
    artifacts: bool = Field(
        True,
        description="Publish Prefect artifacts for each run: live progress, a report, a task "
        "table and the DAG.",
    )
    openai_api_key_secret: str | None = Field(
        None, description="Prefect Secret block holding the OpenAI key (else OPENAI_API_KEY)."
    )
    anthropic_api_key_secret: str | None = Field(
        None,
        description="Prefect Secret block holding the Anthropic key (else ANTHROPIC_API_KEY).",
    )
    prices_file: Path | None = Field(
        None,
        description="YAML/JSON file of prices (USD per million tokens) that extends or overrides "
        "the built-in table.",
    )
    http_timeout_seconds: float = Field(
        120,
        gt=0,
        description="HTTP timeout of a provider call made outside a task; inside a task it is "
        "90% of the task's timeout.",
    )
    retry_after_max_seconds: float = Field(
        300,
        ge=0,
        description="A rate limit that asks to wait longer than this is not retried (a quota "
        "is exhausted, not a burst).",
    )
    default_max_tokens: int = Field(
        1024,
        ge=1,
        description="Output-token limit of a call whose model sets no `max_tokens` option.",
    )
    max_answer_bytes: int = Field(
        16_000_000,
        ge=1_000,
        description="Largest body a provider may answer with, in bytes: counted as it arrives "
        "(reading stops at the limit, or before it starts when the answer declares a larger "
        "size) and the call fails as a permanent error naming the limit.",
    )
    outage_budget_seconds: float = Field(
        60,
        ge=0,
        description="How long calls to an unreachable endpoint wait for it to come back (counted "
        "from when it went down) before they fail for good; the `outage_budget_s` model option "
        "overrides it.",
    )
    api_patience_seconds: float = Field(
        60,
        gt=0,
        description="How long a command waits for a Prefect API that is slow to answer its "
        "health check (a busy server) before it says the server is not answering; a refused "
        "connection fails at once.",
    )
    provider_limits: dict[str, ProviderLimit] = Field(
        default_factory=dict,
        description='Per-provider limits across flow runs, e.g. {"openai": {"max_in_flight": 8, '
        '"requests_per_second": 5}}. Off by default; needs a Prefect server.',
    )
    batch_poll_seconds: float = Field(
        10,
        gt=0,
        description="First wait between two polls of a provider batch (batch_api); each wait "
        "is 1.5 times the last, up to batch_poll_max_seconds.",
    )
    batch_poll_max_seconds: float = Field(
        300, gt=0, description="Longest wait between two polls of a provider batch."
    )
    # Input bounds (promptdag/spec/input_limits.py): `validate` and `run` enforce them alike.
    max_spec_bytes: int = Field(
        8_000_000,
        ge=1,
        description="Largest spec file (and sub-workflow, --context-file or --request file) "
        "read, in bytes; also the largest spec once its YAML aliases are expanded and its "
        "sub-workflows inlined, as JSON.",
    )
    max_spec_values: int = Field(
        250_000,
        ge=1,
        description="Most values (mappings, lists, keys and scalars) in a spec file once its "
        "YAML aliases are expanded; bounds the memory of reading it.",
    )
    max_spec_depth: int = Field(
        100,
        ge=2,
        le=200,
        description="Deepest nesting of mappings and lists in a spec (Prefect cannot serialise "
        "values nested much deeper than 250).",
    )
    max_prompt_chars: int = Field(
        1_000_000, ge=1, description="Longest prompt of a task, in characters."
    )
    max_context_bytes: int = Field(
        1_000_000,
        ge=1,
        description="Largest `context` of a task (or of an objective), as JSON, in bytes.",
    )
    max_data_bytes: int = Field(
        256_000_000, ge=1, description="Largest data file of a batch run (`--data`), in bytes."
    )


_cache: dict[tuple[tuple[str, str], ...], Settings] = {}


def get_settings() -> Settings:
    """The settings as the environment says now; parsed once per distinct PROMPTDAG_ environment
    (it is read on every task run, too often to build a pydantic-settings object each time)."""
    snapshot = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PROMPTDAG_")))
    settings = _cache.get(snapshot)
    if settings is None:
        settings = _cache[snapshot] = Settings()
    return settings
