"""What the HTTP adapters share: status codes to our errors, Retry-After, timeouts, clients.

Each adapter extracts its vendor's message and quirks; the policy lives here once: 429 (rate
limit), 408, 409 and 5xx are retryable, every other status is permanent. A 429 that asks to wait
longer than `retry_after_max_seconds` is a spent quota, not a burst: permanent.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from promptdag.errors import PermanentProviderError, ProviderError, RetryableProviderError
from promptdag.llm.base import CompletionRequest
from promptdag.llm.keys import scrub
from promptdag.settings import get_settings

C = TypeVar("C")

_STATUS_HINT = {
    400: "bad request",
    401: "authentication failed (check the API key)",
    403: "permission denied",
    404: "not found (check the model name and base URL)",
    408: "request timeout",
    409: "conflict",
    413: "request too large",
    422: "unprocessable request",
    429: "rate limited",
}
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: `retry-after-ms`, or `Retry-After` in seconds or as a date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if ms := lowered.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(
    model: str, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """Our error for an HTTP error answer (`detail` is the vendor's own message and type)."""
    hint = _STATUS_HINT.get(status) or ("server error" if status >= 500 else "error")
    message = clip(f"{model}: {hint} (HTTP {status}): {detail}")
    if status == 429:
        wait = retry_after_seconds(headers or {})
        limit = get_settings().retry_after_max_seconds
        if wait is not None and wait > limit:
            return PermanentProviderError(
                f"{message} [asks to wait {wait:g} s, more than retry_after_max_seconds={limit:g}]"
            )
        return RetryableProviderError(message, retry_after=wait)
    if status in (408, 409) or status >= 500:
        return RetryableProviderError(message)
    return PermanentProviderError(message)


def endpoint_of(url: str | None) -> str | None:
    """`scheme://host:port/path` of a base URL: never its user, password or query string
    (where keys sometimes travel). None for no URL (the vendor's own API)."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme)
    netloc = f"{host}:{port}" if port else host
    return scrub(f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}")


def who(model: str, endpoint: str | None) -> str:
    """How errors name a call: `openai:smollm2 at http://127.0.0.1:8011/v1`, or just the model
    for the vendor's own API."""
    return f"{model} at {endpoint}" if endpoint else model


def garbled_answer(model: str, exc: BaseException) -> RetryableProviderError:
    """A success status whose body is not the vendor's JSON (a proxy's page, a cut-off body):
    the next answer may well be fine."""
    return RetryableProviderError(
        clip(f"{model}: garbled answer (not the API's JSON): {type(exc).__name__}: {exc}")
    )


def timeout_error(model: str, seconds: float) -> RetryableProviderError:
    return RetryableProviderError(f"{model}: no answer within the HTTP timeout ({seconds:g} s)")


def connection_error(model: str, exc: BaseException) -> RetryableProviderError:
    cause = exc.__cause__ or exc.__context__
    why = f": {type(cause).__name__}: {cause}" if cause else ""
    return RetryableProviderError(clip(f"{model}: connection failed{why}"))


def clip(text: str, limit: int = 500) -> str:
    """One scrubbed line, short enough for a summary."""
    line = " ".join(scrub(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def http_timeout(request: CompletionRequest) -> float:
    """The request's own timeout (set by the engine below the task's), else the setting."""
    return request.timeout_seconds or get_settings().http_timeout_seconds


def cached_client(key: tuple[Any, ...], build: Callable[[], C]) -> C:
    """One SDK client per (event loop, key): an async client's connections belong to the loop
    that opened them, and `asyncio.run` per call (the sync API, tests) makes new loops."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    if key not in clients:
        clients[key] = build()
    return clients[key]  # type: ignore[no-any-return]
