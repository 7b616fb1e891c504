"""The errors promptdag raises on purpose, each with a one-line message meant for a user."""

from __future__ import annotations

import time
from typing import Any


class PromptDagError(Exception):
    """Base class: every error a user may see, printed as one line by the CLI."""

    exit_code = 1


class SpecError(PromptDagError):
    """The workflow spec (file, fields, graph or model names) is invalid; nothing has run."""

    exit_code = 2


class ConfigError(PromptDagError):
    """The environment is not ready for this run (a missing API key, an unreadable prices file);
    nothing has run. Exit code 2, like bad input: fix it and run again."""

    exit_code = 2


class RunFailedError(PromptDagError):
    """A run ended failed, crashed or cancelled without a result to show; exit 1, as for any
    run that did not complete (bad input and environment problems are exit 2)."""

    exit_code = 1


class ProviderError(PromptDagError):
    """A model call failed. Subclasses say whether trying again can help."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.attempts: int | None = None
        self.usage: Any = None  # llm.base.Usage the failed call(s) still cost, when known


class RetryableProviderError(ProviderError):
    """Rate limits, 5xx answers, dropped connections, timeouts: a retry may succeed.

    `retry_after` is the wait the provider asked for (a 429's `Retry-After`), if any; the engine
    does not start the next attempt before `not_before` (a `time.monotonic()` instant).
    """

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.not_before = time.monotonic() + retry_after if retry_after else None


class PermanentProviderError(ProviderError):
    """Bad requests, bad keys, unknown models: a retry would fail the same way."""

    retryable = False


def attempts_of(exc: BaseException, options: dict[str, Any]) -> int:
    """Calls a failed task run made: recorded on our errors; a timeout used the whole budget."""
    attempts = getattr(exc, "attempts", None)
    if attempts is None:
        attempts = int(options.get("retries") or 0) + 1
    return int(attempts)


def describe_failure(exc: BaseException, timeout: float | None) -> str:
    """One line for a failed task run."""
    if isinstance(exc, ProviderError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    return f"{type(exc).__name__}: {exc}"
