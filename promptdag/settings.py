"""Settings with one home: environment variables prefixed PROMPTDAG_, read at call time."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelLimit(BaseModel):
    """Requests and tokens per minute one provider account (or one of its models) allows."""

    requests_per_minute: float | None = Field(
        None, gt=0, description="Requests started per `window_seconds`.")
    tokens_per_minute: float | None = Field(
        None, gt=0,
        description="Tokens per `window_seconds`: a call takes its prompt's estimate plus its "
        "`max_tokens` when it starts, corrected to the answer's usage when it ends.")


class ProviderLimit(ModelLimit):
    """Limits on one provider's (or one base URL's) requests. `max_in_flight`,
    `requests_per_second`, `requests_per_minute` and `tokens_per_minute` hold across concurrent
    flow runs (Prefect global concurrency limits named `promptdag:<key>...`); `capacity` holds
    in this process, handed over at once."""

    max_in_flight: int | None = Field(None, ge=1, description="Requests in flight at once, "
                                      "across runs (a Prefect concurrency limit).")
    requests_per_second: float | None = Field(None, gt=0, description="Requests started a second.")
    capacity: int | None = Field(
        None, ge=1,
        description="Requests in flight to this endpoint from one process (for llama.cpp, "
        "default: its `/props` total_slots). A task holds it only for its HTTP call.")
    window_seconds: float = Field(
        60, gt=0, description="The period `requests_per_minute` and `tokens_per_minute` count "
        "over (providers count per minute; tests use a shorter one).")
    shared: bool = Field(
        True, description="Also hold requests/tokens per minute in the Prefect server, so "
        "every run and worker shares them (false: this process only).")
    models: dict[str, ModelLimit] = Field(
        default_factory=dict,
        description="Per-model limits within the provider (OpenAI and Anthropic limit per "
        "model), keyed by the model id after `provider:`.")


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
        description='Per-provider (or per-base-URL) limits, e.g. {"openai": {"tokens_per_minute": '
        '200000, "requests_per_minute": 500, "models": {"gpt-4o": {"tokens_per_minute": 30000}}}, '
        '"http://127.0.0.1:8080/v1": {"capacity": 4}} (docs/capacity.md). Off by default.',
    )
    rate_limit_headers: bool = Field(
        True,
        description="Follow the providers' rate-limit headers (x-ratelimit-*, "
        "anthropic-ratelimit-*, Retry-After) to slow down before a 429.",
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
