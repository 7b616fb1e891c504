"""The providers' rate-limit headers, read as OpenAI and Anthropic document them, the bucket
they set up, and an endpoint's capacity (promptdag/llm/rate_limits.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from promptdag.llm import rate_limits


def test_openai_reset_durations():
    assert rate_limits.duration("6m0s") == 360
    assert rate_limits.duration("20ms") == 0.02
    assert rate_limits.duration("1h2m3.5s") == 3723.5
    assert rate_limits.duration(None) is None


def test_openai_and_anthropic_headers_give_limit_remaining_and_reset():
    openai = rate_limits.parse_limits({
        "x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "2s", "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
    })
    assert openai == {"tokens": (30000, 29000, 2.0), "requests": (500, 499, 0.12)}
    reset = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    anthropic = rate_limits.parse_limits({
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "100",
        "anthropic-ratelimit-output-tokens-reset": reset,
    })
    limit, remaining, seconds = anthropic["output-tokens"]
    assert (limit, remaining) == (8000, 100) and seconds is not None and 0 < seconds <= 30


def test_an_answer_with_little_left_makes_the_next_calls_wait():
    endpoint = "http://headers.test/v1"
    rate_limits.observe(endpoint, "m", 200, {
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "50",
        "x-ratelimit-reset-tokens": "950ms",  # refills at 1,000 tokens a second
    })
    [(unit, bucket)] = rate_limits.header_buckets(endpoint, "m")
    assert unit == "tokens"
    assert bucket.reserve(40) == 0  # fits in what is left
    wait = bucket.reserve(60)  # 50 of these are missing: about 50 ms at 1,000 a second
    assert 0 < wait <= 0.05


def test_a_429_retry_after_pauses_the_endpoint():
    rate_limits.observe("http://paused.test/v1", "m", 429, {"Retry-After": "3"})
    assert 0 < rate_limits.pause_left("http://paused.test/v1") <= 3
    assert rate_limits.pause_left("http://other.test/v1") == 0


def test_an_endpoint_holds_as_many_requests_as_its_capacity_says_now():
    async def held_before_full(endpoint: str, capacity: int) -> int:
        gate = rate_limits.capacity_gate(endpoint, capacity)
        held = 0
        while not gate.locked():
            await gate.acquire()
            held += 1
        return held

    async def two_runs() -> tuple[int, int, int]:  # one process, one event loop
        first = await held_before_full("http://slots.test/v1", 4)
        again = await held_before_full("http://slots.test/v1", 4)  # the same 4, all held
        wider = await held_before_full("http://slots.test/v1", 8)  # the setting changed
        return first, again, wider

    assert asyncio.run(two_runs()) == (4, 0, 8)
