"""The skeleton both SDK adapters (`openai`, `anthropic`) share.

Construction from a model string and options, `complete` (key, one cached SDK client per loop,
structured-output negotiation), and one call's connection and error handling are written here
once. A vendor module subclasses `VendorModel` and supplies what differs: its SDK, its client,
the request body, how the answer is read and where its error bodies keep the message. The two
SDKs name their exception classes alike (`APIError`, `APIStatusError`, `APITimeoutError`...),
which is what lets one translation serve both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar, cast

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm.base import Completion, CompletionRequest, StreamUnsupported
from promptdag.llm.context import is_overflow, overflow_error
from promptdag.llm.keys import base_url, resolve_key
from promptdag.llm.negotiation import (
    ModeRejected,
    negotiate,
    refuse_stream,
    rejects_mode,
    rejects_stream,
)
from promptdag.llm.options import ProviderOptions, parse_options
from promptdag.llm.outage import call_through
from promptdag.llm.transport import (
    cached_client,
    clip,
    connection_error,
    endpoint_of,
    garbled_answer,
    status_error,
    timeout_error,
    who,
)

Options = TypeVar("Options", bound=ProviderOptions)
R = TypeVar("R")


class VendorModel(Generic[Options]):
    """A model behind a vendor SDK (see module docstring); subclasses set the class variables."""

    provider: ClassVar[str]  # "openai": the model-string prefix and the options' section
    default_api: ClassVar[str]  # where the SDK goes without a base URL (outage and mode keys)
    modes: ClassVar[tuple[str, ...]]  # structured-output modes, best first
    negotiated: ClassVar[tuple[str, ...]]  # modes a server may refuse with a 400 (then: next)
    sdk: ClassVar[ModuleType]  # the SDK module, for its exception classes
    sdk_error: ClassVar[type[Exception]]  # its root exception (problems found before sending)

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        self.name = f"{self.provider}:{name}"
        self.model_id = name
        self.options: Options = cast(Options, parse_options(self.provider, options or {}))
        self.base_url = base_url(self.provider, self.options)
        self.endpoint = endpoint_of(self.base_url)
        self.label = who(self.name, self.endpoint)  # how errors name this model and server

    @property
    def mode_key(self) -> tuple[str, str, str]:
        """What negotiation remembers modes under: provider, endpoint, model."""
        return (self.provider, self.endpoint or self.default_api, self.model_id)

    async def complete(self, request: CompletionRequest) -> Completion:
        client = await self._cached_client()
        if request.response_schema is None:
            return await self._send(client, request, None, True)
        return await negotiate(
            self.mode_key,
            self.options.structured_output,
            self.modes,
            lambda mode, last: self._send(client, request, mode, last),
        )

    async def _cached_client(self) -> Any:
        key = await resolve_key(self.name, self.provider, self.options)
        return cached_client((self.provider, self.base_url, key), lambda: self._client(key))

    def _client(self, key: str) -> Any:
        """A new SDK client with its own retries off (Prefect's budget is the only one)."""
        raise NotImplementedError

    async def _send(
        self, client: Any, request: CompletionRequest, mode: str | None, last: bool
    ) -> Completion:
        """One call in structured-output `mode` (None: plain text); `last` when no mode is
        left to fall back to."""
        raise NotImplementedError

    def _error_detail(self, exc: Any, body: dict[str, Any]) -> tuple[str, str]:
        """The vendor's error message from a status error's body, and the message with the
        error's kind for our error text."""
        raise NotImplementedError

    def _status_quirk(self, body: dict[str, Any], detail: str) -> ProviderError | None:
        """A vendor's own reading of an error body that overrides the status policy."""
        return None

    async def _call(
        self,
        create: Callable[[], Awaitable[R]],
        timeout: float,
        mode: str | None,
        streaming: bool = False,
    ) -> R:
        """`create()` through the outage wait, with the SDK's errors translated into ours (a
        refused structured mode as `ModeRejected`, so negotiation tries the next; a refused
        stream of a constrained answer as `StreamUnsupported`). After a constrained request,
        only a refused connection is an outage: one the server took and dropped without an
        answer (llama-cpp-python's process dies on a grammar it cannot compile) refuses the
        mode."""
        sdk = self.sdk
        constrained = mode in self.negotiated
        try:
            return await call_through(
                self.endpoint or self.default_api,
                self.options.outage_budget(),
                create,
                self._refused if constrained else self._cannot_connect,
            )
        except sdk.APIError as exc:
            error = self._translate(exc, timeout)
            if streaming and constrained and self._rejects_stream(exc):
                raise StreamUnsupported(
                    f"{self.label} does not stream structured answers ({error}): asking for "
                    "whole answers", refuse_stream(self.mode_key)) from None
            if constrained and (self._rejects(exc) or self._dropped(exc)):
                raise ModeRejected(error) from None
            raise error from None
        except ValueError as exc:  # a 200 whose body is not JSON (JSONDecodeError)
            raise garbled_answer(self.label, exc) from None
        except self.sdk_error as exc:  # configuration problems the SDK finds before sending
            raise PermanentProviderError(clip(f"{self.label}: {exc}")) from None

    def _cannot_connect(self, exc: BaseException) -> bool:
        """The request got no answer at all (refused, reset, no such host): the endpoint is
        down."""
        return isinstance(exc, self.sdk.APIConnectionError) and not isinstance(
            exc, self.sdk.APITimeoutError
        )

    def _refused(self, exc: BaseException) -> bool:
        """No connection was made at all (refused, no such host): the endpoint is down."""
        cause = exc.__cause__
        return self._cannot_connect(exc) and cause is not None and is_a(cause, "ConnectError")

    def _dropped(self, exc: BaseException) -> bool:
        """The server took the request and closed the connection without an answer."""
        return self._cannot_connect(exc) and not self._refused(exc)

    def _rejects_stream(self, exc: Any) -> bool:
        if not isinstance(exc, self.sdk.APIStatusError):
            return False
        return rejects_stream(exc.status_code,
                              f"{exc.message} {json.dumps(exc.body, default=str)}")

    def _rejects(self, exc: Any) -> bool:
        if not isinstance(exc, self.sdk.APIStatusError):
            return False
        text = f"{exc.message} {json.dumps(exc.body, default=str)}"
        return rejects_mode(exc.status_code, text)

    def _translate(self, exc: Any, timeout: float) -> ProviderError:
        sdk, model = self.sdk, self.label
        if isinstance(exc, sdk.APITimeoutError):
            return timeout_error(model, timeout)
        if isinstance(exc, sdk.APIConnectionError):
            return connection_error(model, exc)
        if isinstance(exc, sdk.APIResponseValidationError):
            return garbled_answer(model, exc)
        if isinstance(exc, sdk.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            message, detail = self._error_detail(exc, body)
            if is_overflow(exc.status_code, message, body):
                return overflow_error(model, exc.status_code, message, body)
            quirk = self._status_quirk(body, detail)
            if quirk is not None:
                return quirk
            return status_error(model, exc.status_code, detail, exc.response.headers)
        return PermanentProviderError(clip(f"{model}: {type(exc).__name__}: {exc.message}"))


def is_a(exc: BaseException, name: str) -> bool:
    """`exc` is the SDK's HTTP library's exception `name` (SDKs have shipped with httpx and
    with a fork of it, so the class is matched by name)."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


def schema_name(schema: dict[str, Any]) -> str:
    """A name the vendors accept for a schema (response format or tool): its title, cleaned."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
