"""Tokens per minute: a batch paced by promptdag gets no 429 from a server that enforces the
limit as OpenAI does, and uses the limit's throughput; unpaced, the same batch is a 429 storm.

The server runs a scaled limit (tokens per `WINDOW` seconds instead of per minute) so each run
takes seconds. Throughput is measured by the server's own clock and count (tokens it admitted
between its first and last admission), not by the test's wall clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from promptdag.api import arun
from promptdag.llm import rate_limits
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


@pytest.mark.parametrize("limited", [False], indirect=True)
async def test_a_paced_batch_gets_no_429_and_the_limits_throughput(
    limited: RateLimitedOpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PROMPTDAG_PROVIDER_LIMITS", json.dumps(
        {"openai": {"tokens_per_minute": LIMIT, "window_seconds": WINDOW, "shared": False}}))
    result = await arun(batch(retries=0), data=ROWS)
    assert result.status == "completed", result.summary
    assert limited.refused == 0 and len(limited.admitted) == CALLS
    # At the limit's rate, within 10%, by the server's own accounting.
    assert limited.throughput_share() >= 0.9, limited.throughput_share()
    assert limited.throughput_share() <= 1.02


@pytest.mark.parametrize("limited", [False], indirect=True)
async def test_unpaced_the_same_batch_is_a_429_storm(
    limited: RateLimitedOpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PROMPTDAG_RATE_LIMIT_HEADERS", "false")
    result = await arun(batch(retries=0), data=ROWS)
    assert result.status == "failed"
    assert limited.refused >= CALLS // 2  # most calls refused: nothing held them back
    failed = [t for t in result.tasks if t.status == "failed"]
    assert len(failed) == limited.refused and "rate limited (HTTP 429)" in str(failed[0].error)


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
