"""Bounded answers: a provider's HTTP body is counted as it arrives and refused past a size.

The SDKs read a whole body into memory before parsing it, so a server that answers with 50 MB
(a proxy's error dump, a runaway generation, a hostile endpoint) would cost 50 MB per call, and
then more in the result and its storage. The SDK clients are built with a response hook
(`bounded_http_client`) that refuses a body whose Content-Length is over `max_answer_bytes`
before reading any of it, and otherwise wraps the body's stream so that reading stops, and the
connection is closed, at the first chunk past the limit. Either way the call fails with
`AnswerTooLarge`, a permanent error (the same request would get the same answer) that names
the limit and how to raise it. Bytes are counted as received (compressed, if the server
compresses).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx2

from promptdag.errors import PermanentProviderError
from promptdag.settings import get_settings

C = TypeVar("C")


class AnswerTooLarge(PermanentProviderError):
    """A provider's answer body went past `max_answer_bytes`."""


def bounded_http_client(factory: Callable[..., C]) -> C:
    """An SDK's HTTP client (`openai.DefaultAsyncHttpxClient`, the Anthropic one) with its own
    defaults, whose answers are bounded as the module docstring says."""
    from promptdag.llm.rate_limits import observe_response

    # observe_response: the answer's rate-limit headers (promptdag/llm/rate_limits.py)
    return factory(event_hooks={"response": [bound_answer, observe_response]})


async def bound_answer(response: httpx2.Response) -> None:
    """The response hook: runs when the headers have arrived, before the body is read."""
    limit = get_settings().max_answer_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(response, limit, f"it declares {int(declared):,} bytes")
    response.stream = _Bounded(response.stream, limit, response)


def too_large(response: httpx2.Response, limit: int, what: str) -> AnswerTooLarge:
    from promptdag.llm.transport import endpoint_of

    where = endpoint_of(str(response.request.url)) or "the provider"
    return AnswerTooLarge(
        f"the answer from {where} is larger than max_answer_bytes={limit:,} bytes ({what}); "
        "if answers that large are expected, raise PROMPTDAG_MAX_ANSWER_BYTES"
    )


class _Bounded(httpx2.AsyncByteStream):
    """A body stream that raises `AnswerTooLarge` once more than `limit` bytes came through."""

    def __init__(self, inner: Any, limit: int, response: httpx2.Response) -> None:
        self._inner = inner
        self._limit = limit
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            received += len(chunk)
            if received > self._limit:
                raise too_large(self._response, self._limit,
                                f"reading stopped at {received:,} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
