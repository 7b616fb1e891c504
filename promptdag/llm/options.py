"""Options of the real providers, and which options apply to which model of a fallback chain.

Pure (no SDK import), so a spec is checked before anything is imported or started. A spec switches
between models by changing one string, so options another provider understands (`seed` for
Anthropic, `latency_s` of `simulated`) are ignored; a name no provider knows is a typo and an
error. Options may also be scoped to one model of a chain by keying them with the model string:

    model: [openai:llama3.1, openai:gpt-4o-mini]
    model_options:
      temperature: 0.2
      "openai:llama3.1": {base_url: "http://localhost:11434/v1"}
"""

from __future__ import annotations

import difflib
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptdag.errors import SpecError
from promptdag.settings import get_settings

StructuredMode = Literal["auto", "json_schema", "json_object", "tool", "prompt"]
OPENAI_MODES = ("json_schema", "json_object", "prompt")
ANTHROPIC_MODES = ("tool", "prompt")


class ProviderOptions(BaseModel):
    """What every HTTP provider understands."""

    model_config = ConfigDict(extra="ignore")

    base_url: str | None = Field(
        None, description="API base URL (an OpenAI-compatible server: vLLM, Ollama, LM Studio)."
    )
    api_key_env: str | None = Field(None, description="Environment variable holding the key.")
    api_key_secret: str | None = Field(None, description="Prefect Secret block holding the key.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(
        None, ge=1, description="Output-token limit (default: PROMPTDAG_DEFAULT_MAX_TOKENS)."
    )
    stop: list[str] | None = None
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Sent as they are in the request body."
    )
    structured_output: StructuredMode = Field(
        "auto",
        description="How structured answers are asked for: 'auto' tries the best mode the "
        "server accepts and remembers it; or pin one ('json_schema', 'json_object' or 'prompt' "
        "for OpenAI-compatible servers; 'tool' or 'prompt' for Anthropic).",
    )
    context_window: int | None = Field(
        None, ge=1, description="The model's context window in tokens, when the default is wrong."
    )
    outage_budget_s: float | None = Field(
        None,
        ge=0,
        description="Seconds calls wait for an unreachable endpoint to come back "
        "(default: PROMPTDAG_OUTAGE_BUDGET_SECONDS).",
    )

    def max_tokens_for(self, request_max_tokens: int | None = None) -> int:
        """The output-token limit of one call: the request's own, the option, the setting."""
        return request_max_tokens or self.max_tokens or get_settings().default_max_tokens

    def outage_budget(self) -> float:
        if self.outage_budget_s is not None:
            return self.outage_budget_s
        return get_settings().outage_budget_seconds


class OpenAIOptions(ProviderOptions):
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    reasoning_effort: str | None = None
    strict_schema: bool = Field(
        True, description="Use strict JSON-schema mode when the schema allows it."
    )

    @field_validator("structured_output")
    @classmethod
    def _openai_mode(cls, value: str) -> str:
        if value not in ("auto", *OPENAI_MODES):
            raise ValueError(f"must be one of auto, {', '.join(OPENAI_MODES)} for openai")
        return value


class AnthropicOptions(ProviderOptions):
    top_k: int | None = Field(None, ge=0)

    @field_validator("structured_output")
    @classmethod
    def _anthropic_mode(cls, value: str) -> str:
        if value not in ("auto", *ANTHROPIC_MODES):
            raise ValueError(f"must be one of auto, {', '.join(ANTHROPIC_MODES)} for anthropic")
        return value


class SimulatedOptions(BaseModel):
    """The options `simulated` understands; others (temperature...) are accepted and ignored so
    a spec can switch between a real model and `simulated` by changing one string."""

    model_config = ConfigDict(extra="ignore")

    latency_s: float = Field(0.0, ge=0, le=86_400)
    failure_rate: float = Field(0.0, ge=0, le=1)
    fail_first: int = Field(0, ge=0)
    seed: int = 0
    extra_rounds: int = Field(0, ge=0)
    invalid_plans: int = Field(0, ge=0)
    fail_roles: list[str] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    max_tokens: int | None = Field(None, ge=1)
    context_window: int | None = Field(None, ge=1)


OPTION_MODELS: dict[str, type[ProviderOptions]] = {
    "openai": OpenAIOptions,
    "anthropic": AnthropicOptions,
}
KNOWN = set(SimulatedOptions.model_fields).union(
    *(set(cls.model_fields) for cls in OPTION_MODELS.values())
)
M = TypeVar("M", bound=BaseModel)


def is_model_key(key: str) -> bool:
    """`"openai:gpt-4o"` as an option name scopes its value to that model of the chain."""
    return ":" in key


def options_for(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options one model of a chain gets: the shared ones, then its own on top."""
    shared = {k: v for k, v in options.items() if not is_model_key(k)}
    own = options.get(model)
    return {**shared, **own} if isinstance(own, dict) else shared


def check_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options `model` gets from a task's `options`; SpecError for a key in a spec, or for a
    real provider's typo or bad value. Other providers (`simulated`, registered ones) check
    their own options.
    """
    prefix = model.partition(":")[0].strip()
    for key, value in options.items():
        if is_model_key(key) and not isinstance(value, dict):
            raise SpecError(f"model_options {key!r} must be a mapping of options for that model")
    resolved = options_for(model, options)
    for key in resolved:
        if key in ("api_key", "key", "auth_token"):
            raise SpecError(
                "model_options: never put an API key in a spec (it would show in the Prefect UI); "
                "use the SDK's variable (OPENAI_API_KEY, ANTHROPIC_API_KEY), 'api_key_env' or "
                "'api_key_secret'"
            )
        if prefix in OPTION_MODELS and key not in KNOWN:
            match = difflib.get_close_matches(key, sorted(KNOWN), n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            raise SpecError(f"unknown model option {key!r}{hint}")
    if prefix in OPTION_MODELS:
        parse_options(prefix, resolved)
    return resolved


def parse_options(prefix: str, options: dict[str, Any]) -> ProviderOptions:
    return validate_options(prefix, OPTION_MODELS[prefix], options)


def validate_options(prefix: str, cls: type[M], options: dict[str, Any]) -> M:
    """`options` as `cls`; SpecError naming the first bad field ("openai model option ...")."""
    try:
        return cls.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise SpecError(f"{prefix} model option {field!r}: {first['msg']}") from None
