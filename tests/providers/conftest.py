"""Provider tests: the real SDKs against loopback servers that speak the vendors' protocols.

Nothing here reaches the network: every base URL points at 127.0.0.1, and the environment is
cleared of real keys and URLs first. Engine tests (`prefect_api`) run real Prefect against a
temporary local API, as tests/flows does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers.servers import ANTHROPIC_KEY, OPENAI_KEY, AnthropicServer, OpenAIServer

_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_PROFILE",
    "PROMPTDAG_OPENAI_API_KEY_SECRET",
    "PROMPTDAG_ANTHROPIC_API_KEY_SECRET",
    "PROMPTDAG_PRICES_FILE",
    "PROMPTDAG_PROVIDER_LIMITS",
    "PROMPTDAG_MODEL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real key or URL from the developer's shell can leak into (or out of) a test."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """A chat-completions server; the SDK finds it and its key through its own variables."""
    server = OpenAIServer(OPENAI_KEY).start()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    yield server
    server.stop()


@pytest.fixture
def anthropic_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicServer]:
    """A messages server; the SDK finds it and its key through its own variables."""
    server = AnthropicServer(ANTHROPIC_KEY).start()
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    yield server
    server.stop()
