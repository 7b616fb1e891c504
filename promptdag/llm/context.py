"""Context windows: what a model holds, where to learn it, and the error when a request overflows.

A model's window comes from its `context_window` option first, then a table of known vendor
models, then (for a self-hosted OpenAI-compatible server) llama.cpp's `GET /props`, which reports
the context of one slot. An answer that says the request did not fit becomes one clear permanent
error with both numbers when the server gives them:
`context overflow: the request has 2131 tokens, the model's context is 2048 tokens`.
"""

from __future__ import annotations

import re
from typing import Any

from promptdag.errors import PermanentProviderError
from promptdag.llm.transport import clip

# Longest prefix wins. OpenAI's published windows (input plus output).
KNOWN_OPENAI: dict[str, int] = {
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "chatgpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1-mini": 128_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
}
ANTHROPIC_WINDOW = 200_000
PROPS_TIMEOUT_SECONDS = 2.0

_props_cache: dict[str, dict[str, Any]] = {}
_OVERFLOW_MARKERS = (
    "exceed_context_size_error",
    "context_length_exceeded",
    "exceeds the available context size",
    "maximum context length",
    "prompt is too long",
    "context window",
)


def known_window(model_id: str) -> int | None:
    """The published window of a vendor model by name (dated versions included)."""
    for prefix in sorted(KNOWN_OPENAI, key=len, reverse=True):
        if model_id == prefix or model_id.startswith(prefix + "-"):
            return KNOWN_OPENAI[prefix]
    return None


async def props_window(base_url: str) -> int | None:
    """llama.cpp's per-slot context (`n_ctx` of `GET {server root}/props`); None when the
    server is not llama.cpp, is down, or is slow."""
    props = await server_props(base_url)
    try:
        settings = props.get("default_generation_settings") or {}
        value = settings.get("n_ctx") or props.get("n_ctx")
        return int(value) if value else None
    except (ValueError, TypeError, AttributeError):
        return None


async def props_slots(base_url: str) -> int | None:
    """llama.cpp's parallel slots (`total_slots` of `GET {server root}/props`): how many
    requests it serves at once; None when the server does not say."""
    try:
        value = (await server_props(base_url)).get("total_slots")
        return int(value) if value else None
    except (ValueError, TypeError, AttributeError):
        return None


async def server_props(base_url: str) -> dict[str, Any]:
    """llama.cpp's `GET {server root}/props`, cached per server once it answers; empty when
    the server is not llama.cpp, is down, or is slow (a short timeout: this is advice, not a
    call the task depends on)."""
    root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))
    if root in _props_cache:
        return _props_cache[root]
    import httpx

    try:
        async with httpx.AsyncClient(timeout=PROPS_TIMEOUT_SECONDS) as client:
            response = await client.get(f"{root}/props")
    except httpx.HTTPError:
        return {}  # down or slow: ask again next time
    props: dict[str, Any] = {}
    try:
        if response.status_code == 200 and isinstance(found := response.json(), dict):
            props = found
    except ValueError:
        props = {}
    _props_cache[root] = props  # it answered: llama.cpp or not, that will not change
    return props


def is_overflow(status: int, message: str, body: dict[str, Any]) -> bool:
    """True when an error answer says the request does not fit the model's context."""
    if status not in (400, 413, 422):
        return False
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    assert isinstance(error, dict)
    words = " ".join(str(error.get(k) or "") for k in ("type", "code")) + " " + message
    return any(marker in words for marker in _OVERFLOW_MARKERS)


def overflow_numbers(message: str, body: dict[str, Any]) -> tuple[int | None, int | None]:
    """(request tokens, context tokens) from an overflow answer, either may be None.

    llama.cpp: `request (2131 tokens) exceeds the available context size (2048 tokens)` plus
    `n_prompt_tokens` and `n_ctx`; OpenAI and vLLM: `maximum context length is 128000 tokens.
    However, your messages resulted in 130000 tokens`; Anthropic: `prompt is too long: 208310
    tokens > 200000 maximum`.
    """
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    assert isinstance(error, dict)
    used = _int(error.get("n_prompt_tokens"))
    window = _int(error.get("n_ctx"))
    patterns_used = (
        r"request \((\d+) tokens\)",
        r"resulted in (\d+) tokens",
        r"requested (\d+) tokens",
        r"too long: (\d+) tokens",
    )
    patterns_window = (
        r"context size \((\d+) tokens\)",
        r"maximum context length is (\d+)",
        r"> (\d+) maximum",
    )
    used = used or _first(patterns_used, message)
    window = window or _first(patterns_window, message)
    return used, window


def overflow_error(
    model: str, status: int, message: str, body: dict[str, Any]
) -> PermanentProviderError:
    """The one error for a request that does not fit (a retry would not fit either)."""
    used, window = overflow_numbers(message, body)
    if used and window:
        what = f"the request has {used} tokens, the model's context is {window} tokens"
    elif window:
        what = f"the request is longer than the model's context of {window} tokens"
    else:
        what = "the request is longer than the model's context"
    return PermanentProviderError(
        clip(
            f"{model}: context overflow: {what} (HTTP {status}: {message}); shorten the prompt "
            "or lower max_tokens"
        )
    )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _first(patterns: tuple[str, ...], text: str) -> int | None:
    for pattern in patterns:
        if match := re.search(pattern, text):
            return int(match.group(1))
    return None
