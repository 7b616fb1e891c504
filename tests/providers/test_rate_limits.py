"""Tokens per minute: calls paced by promptdag get no 429 from a server that enforces the
limit as OpenAI does, and use the limit's throughput; unpaced, the same calls are a 429 storm.

The server runs a scaled limit (tokens per `WINDOW` seconds instead of per minute) so each run
takes seconds. Throughput is measured by the server's own clock and count (tokens it admitted
between its first and last admission), not by the test's wall clock.

Throughput is asserted on the model-call path (`ModelCall`'s paced model, 200 calls at 32 in
flight): the pacer, not the machine, must be what bounds it, and a whole batch on a loaded
2-core machine is bound by Prefect's per-task bookkeeping (about 4 calls a second under a load
average of 14) before it reaches the limit (17 calls a second). The batch through the
whole engine (100 rows, 1.4 buckets' worth) asserts what holds on any machine: not one 429.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from promptdag.api import arun
from promptdag.errors import RetryableProviderError
from promptdag.llm import rate_limits
from promptdag.tasks.model_call import ModelCall
from tests.providers.servers import OPENAI_KEY, RateLimitedOpenAIServer, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")

LIMIT = 2400  # tokens per WINDOW (600 a second): a call takes ~34 (a short prompt + 32)
WINDOW = 4.0
CALLS = 200


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
            ) -> Iterator[RateLimitedOpenAIServer]:
    headers = getattr(request, "param", True)
    server = RateLimitedOpenAIServer(OPENAI_KEY, LIMIT, WINDOW, headers=headers).start()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    rate_limits._endpoints.clear()  # what earlier tests' servers taught this process
    yield server
    server.stop()


def batch(retries: int) -> dict[str, object]:
    return {
        "name": "paced",
        "config": {
            "breadth": 32,
            "model": "openai:gpt-4o-mini",
            "model_options": {"max_tokens": 32},
            "max_retries": retries,
            "retry_backoff_seconds": 0,
            "reuse_results": False,
        },
        "tasks": [{"name": "ask", "prompt": "row {{ n }}"}],
    }


ROWS = [{"id": str(i), "n": i} for i in range(CALLS)]


async def calls(count: int, in_flight: int = 32) -> int:
    """`count` calls on the one model-call path, `in_flight` at a time; how many failed."""
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> bool:
        async with gate:
            call = ModelCall("openai:gpt-4o-mini", {"max_tokens": 32}, f"row {i}")
            try:
                await call.model.complete(call.request(f"row {i}", {}))
            except RetryableProviderError:
                return False
            return True

    return sum(not ok for ok in await asyncio.gather(*(one(i) for i in range(count))))


def limit(shared: bool = False) -> str:
    return json.dumps({"openai": {"tokens_per_minute": LIMIT, "window_seconds": WINDOW,
                                  "shared": shared}})


@pytest.mark.parametrize("limited", [False], indirect=True)
async def test_paced_calls_get_no_429_and_the_limits_throughput(
    limited: RateLimitedOpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PROMPTDAG_PROVIDER_LIMITS", limit())
    assert await calls(CALLS) == 0
    assert limited.refused == 0 and len(limited.admitted) == CALLS
    # At the limit's rate, within 10%, by the server's own accounting.
    assert 0.9 <= limited.throughput_share() <= 1.02, limited.throughput_share()


@pytest.mark.parametrize("limited", [False], indirect=True)
async def test_unpaced_the_same_calls_are_a_429_storm(
    limited: RateLimitedOpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PROMPTDAG_RATE_LIMIT_HEADERS", "false")
    failed = await calls(CALLS)
    # The first full bucket (about 70 calls) goes through, then calls are refused as fast as
    # the client sends them (how many depends on the machine's speed: at least a tenth).
    assert failed == limited.refused >= CALLS // 10


@pytest.mark.parametrize("limited", [False], indirect=True)
async def test_a_paced_batch_gets_no_429(
    limited: RateLimitedOpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    """The whole engine, the limit shared through the Prefect server."""
    monkeypatch.setenv("PROMPTDAG_PROVIDER_LIMITS", limit(shared=True))
    rows = ROWS[:100]  # about 3,400 tokens: past the full bucket (2,400), so pacing must bind
    result = await arun(batch(retries=0), data=rows)
    assert result.status == "completed", result.summary
    assert limited.refused == 0 and len(limited.admitted) == len(rows)


async def test_the_rate_limit_headers_alone_slow_the_batch_down(
    limited: RateLimitedOpenAIServer,
):
    """No limit configured: the answers' `x-ratelimit-*-tokens` headers pace the calls."""
    result = await arun(batch(retries=2), data=ROWS[:120])
    assert result.status == "completed", result.summary
    # Before the first answer nothing is known (the first breadth's calls go at once, within
    # the bucket); after it, the headers keep every call within the limit.
    assert limited.refused == 0


async def test_a_429_retry_after_pauses_every_new_call_to_that_endpoint(
    limited: RateLimitedOpenAIServer,
):
    limited.script(
        Reply(status=429, body={"error": {"message": "Rate limit reached", "type": "requests",
                                          "param": None, "code": "rate_limit_exceeded"}},
              headers={"retry-after-ms": "1500"}),
        Reply(content="ok", delay=0.1),
    )
    spec = batch(retries=1)
    spec["config"]["breadth"] = 2  # type: ignore[index]
    result = await arun(spec, data=ROWS[:4])
    assert result.status == "completed"
    refused = next(seen for seen in limited.requests if seen.status == 429)
    later = limited.requests[2:]  # the retry, and the rows that started after the 429
    assert len(later) == 3
    # Without the pause the third row would have started when the second's call ended
    # (~0.1 s); every call after the 429 started after the 1.5 s it asked for.
    assert all(seen.start >= refused.end + 1.5 - 0.01 for seen in later)
