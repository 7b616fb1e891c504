"""API keys: where each model's key comes from, the check before a run, and scrubbing.

A key comes from, in order: the model's `api_key_secret` option (a Prefect Secret block), its
`api_key_env` option (an environment variable), the `PROMPTDAG_<PROVIDER>_API_KEY_SECRET`
setting, then the SDK's own variable (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`). A model with its
own base URL (an OpenAI-compatible server such as Ollama or vLLM) may have no key: it gets a
placeholder. Keys live in memory only; every message built from a provider's answer goes
through `scrub`, so a key never reaches a log, a result or an error. An answer itself goes
through `mask_keys` (the one model-call path wraps every model in `KeyMasking`): a model or
server that echoes a key back has it replaced before the answer is stored, printed or published.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from promptdag.errors import ConfigError, PermanentProviderError
from promptdag.llm.base import (
    Completion,
    CompletionRequest,
    Model,
    StreamUnsupported,
    TextSink,
    WithStreaming,
    context_window_of,
)
from promptdag.llm.options import ProviderOptions
from promptdag.settings import get_settings

SDK_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
SDK_BASE_URL_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
NO_KEY = "no-key-needed"  # what a keyless OpenAI-compatible server receives
# Names of the vendors' own models; any other name is a model of a server of the user's own
VENDOR_MODEL_PREFIXES = {
    "openai": ("gpt-", "o1", "o3", "o4", "chatgpt-", "codex-", "computer-use-", "davinci-",
               "babbage-"),
    "anthropic": ("claude-",),
}

_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-|proj-)?)[A-Za-z0-9_\-]{6,}")
_seen: set[str] = set()
_secret_values: dict[str, str] = {}


@dataclass(frozen=True)
class KeySource:
    """Where one model's key comes from (never the key itself)."""

    provider: str
    secret: str | None = None
    env: str | None = None
    optional: bool = False

    def describe(self) -> str:
        return f"Prefect Secret block {self.secret!r}" if self.secret else f"${self.env}"


def base_url(provider: str, options: ProviderOptions) -> str | None:
    """The model's own base URL: its `base_url` option, else the SDK's variable."""
    return options.base_url or os.environ.get(SDK_BASE_URL_ENV[provider]) or None


def key_source(provider: str, options: ProviderOptions) -> KeySource:
    optional = base_url(provider, options) is not None
    if options.api_key_secret:
        return KeySource(provider, secret=options.api_key_secret, optional=optional)
    if options.api_key_env:
        return KeySource(provider, env=options.api_key_env, optional=optional)
    configured = getattr(get_settings(), f"{provider}_api_key_secret", None)
    if configured:
        return KeySource(provider, secret=configured, optional=optional)
    return KeySource(provider, env=SDK_KEY_ENV[provider], optional=optional)


def check_key(model: str, provider: str, options: ProviderOptions) -> None:
    """ConfigError, one line naming what is missing, when the model certainly cannot be called
    (no network, no Prefect: a Secret block is looked up at the first call). A model that is
    not the vendor's own (`openai:llama3.1`) is missing its server's base URL, not a key."""
    source = key_source(provider, options)
    if source.secret or source.optional or os.environ.get(source.env or ""):
        return
    setting = f"PROMPTDAG_{provider.upper()}_API_KEY_SECRET"
    if source.env == SDK_KEY_ENV[provider]:
        how = f"set {source.env}, or name a Prefect Secret block in {setting}"
    else:
        how = f"set {source.env} (named by the model's 'api_key_env' option)"
    name = model.split(":", 1)[-1]
    if not name.lower().startswith(VENDOR_MODEL_PREFIXES[provider]):  # a server of your own
        raise ConfigError(
            f"model {model!r} has no base URL: set {SDK_BASE_URL_ENV[provider]} (or the "
            f"model's 'base_url' option) to its server, e.g. http://127.0.0.1:8080/v1; for "
            f"{provider}'s own API instead, {how}")
    raise ConfigError(f"model {model!r} needs an API key: {how}")


async def resolve_key(model: str, provider: str, options: ProviderOptions) -> str:
    """The key itself, at call time (a Secret block is loaded once per process)."""
    source = key_source(provider, options)
    key: str | None
    if source.secret:
        key = await _load_secret(model, source.secret)
    else:
        key = os.environ.get(source.env or "") or None
    if not key:
        if source.optional:
            return NO_KEY
        raise PermanentProviderError(f"{model}: no API key in {source.describe()}")
    _seen.add(key)
    return key


async def _load_secret(model: str, name: str) -> str:
    if name not in _secret_values:
        from prefect.blocks.system import Secret  # only when a Secret block is configured

        try:
            block: Secret[Any] = await Secret.aload(name)  # type: ignore[assignment]
        except (ValueError, KeyError):
            raise PermanentProviderError(
                f"{model}: Prefect Secret block {name!r} not found; create it with "
                f"Secret(value=...).save({name!r})"
            ) from None
        _secret_values[name] = str(block.get())
    return _secret_values[name]


def scrub(text: str) -> str:
    """Remove every key this process knows, and anything shaped like a vendor key."""
    return _KEY_PATTERN.sub(r"\1***", mask_keys(text))


def mask_keys(text: str) -> str:
    """Replace the value of every configured key with `***`: the keys this process resolved
    (from environment variables and Prefect Secret blocks) and the SDKs' own variables. Unlike
    `scrub`, text merely shaped like a key stays: an answer may rightly show an example."""
    known = _seen | set(_secret_values.values())
    known |= {os.environ.get(var, "") for var in SDK_KEY_ENV.values()}
    for key in sorted((k for k in known if len(k) >= 6 and k != NO_KEY), key=len, reverse=True):
        text = text.replace(key, "***")
    return text


class KeyMasking:
    """A model whose answers have every configured key masked (`mask_keys`); everything else
    is the wrapped model's."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.name = model.name

    async def complete(self, request: CompletionRequest) -> Completion:
        completion = await self.model.complete(request)
        masked = mask_keys(completion.text)
        if masked == completion.text:
            return completion
        return completion.model_copy(update={"text": masked})

    async def stream(self, request: CompletionRequest, on_text: TextSink) -> Completion:
        """Streamed with each piece and the whole answer masked; `StreamUnsupported` when the
        wrapped model cannot stream."""
        model = self.model
        if not isinstance(model, WithStreaming):
            raise StreamUnsupported(f"{self.name} does not stream", first=False)
        completion = await model.stream(request, lambda piece: on_text(mask_keys(piece)))
        masked = mask_keys(completion.text)
        if masked == completion.text:
            return completion
        return completion.model_copy(update={"text": masked})

    async def context_window(self) -> int | None:
        return await context_window_of(self.model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)
