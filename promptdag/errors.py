"""The errors promptdag raises on purpose, each with a one-line message meant for a user."""

from __future__ import annotations


class PromptDagError(Exception):
    """Base class: every error a user may see, printed as one line by the CLI."""

    exit_code = 1


class SpecError(PromptDagError):
    """The workflow spec (file, fields, graph or model names) is invalid; nothing has run."""

    exit_code = 2


class ProviderError(PromptDagError):
    """A model call failed. Subclasses say whether trying again can help."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.attempts: int | None = None


class RetryableProviderError(ProviderError):
    """Rate limits, 5xx answers, dropped connections, timeouts: a retry may succeed."""

    retryable = True


class PermanentProviderError(ProviderError):
    """Bad requests, bad keys, unknown models: a retry would fail the same way."""

    retryable = False
