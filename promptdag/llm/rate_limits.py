"""Pacing calls to a provider in this process: token buckets, rate-limit headers, capacity.

- **Token buckets** (`TokenBucket`): requests per minute and tokens per minute, per provider
  and per model, from the `provider_limits` setting. A call reserves its estimated tokens
  (prompt + `max_tokens`) and sleeps until the bucket holds them; reservations queue in order, so
  the provider sees a steady stream at the limit instead of bursts and 429s. When the call ends
  the bucket is charged what the answer's usage says it used.
- **Rate-limit headers**: every answer's `x-ratelimit-*` (OpenAI) or `anthropic-ratelimit-*`
  headers tell how much of the account's limit is left and when it refills; a bucket per
  (endpoint, model, unit) follows them, and is never fuller than the provider says. A 429's
  `Retry-After` pauses every new call to that endpoint until then, not only the one retried.
- **Capacity**: requests in flight to one endpoint (a setting per provider or base URL, or
  llama.cpp's `/props` `total_slots`), held only around the HTTP call, so a workflow's breadth
  may exceed it and a task's bookkeeping overlaps other tasks' calls.

No Prefect here: the limits shared by every run through the Prefect server are in
tasks/provider_limits.py, which uses these buckets for the in-process part.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from promptdag.llm.context import props_slots
from promptdag.llm.transport import retry_after_seconds

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class TokenBucket:
    """A bucket of `capacity` units refilled at `per_second`, with reservations.

    `reserve(n)` holds n units for a call and returns how long the caller must wait before
    making it: callers queue in reservation order. The units are taken out of the bucket (and
    start refilling) only when the call ends (`settle`), with what it used: a provider counts a
    request when it arrives, later than we reserve it, so taking it out at the end never lets
    this bucket believe it holds more than the provider's. Thread-safe, independent of event
    loops.
    """

    def __init__(self, capacity: float, per_second: float) -> None:
        self.capacity = float(capacity)
        self.per_second = float(per_second)
        self.level = float(capacity)
        self.held = 0.0  # reserved by calls not yet ended
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now

    def reserve(self, amount: float) -> float:
        """Hold `amount`; seconds to wait before using it (0: now)."""
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            self.held += amount
            free = self.level - self.held
            if free >= 0 or self.per_second <= 0:
                return 0.0
            return -free / self.per_second

    def settle(self, reserved: float, used: float) -> None:
        """A call that reserved `reserved` ended having used `used`: take that out now."""
        with self._lock:
            self._refill(time.monotonic())
            self.held = max(0.0, self.held - reserved)
            self.level -= used

    def follow(self, capacity: float, remaining: float, reset_seconds: float | None) -> None:
        """The provider says how much is left and when it is full again: never hold more than
        it says (a lower figure wins: another process or a different count used some)."""
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            self.capacity = max(1.0, capacity)
            if reset_seconds and reset_seconds > 0 and capacity > remaining:
                self.per_second = (capacity - remaining) / reset_seconds
            self.level = min(self.level, remaining)


@dataclass
class _Endpoint:
    """What this process knows of one endpoint's limits from its answers."""

    buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)
    paused_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


_endpoints: dict[str, _Endpoint] = {}
_endpoints_lock = threading.Lock()


def endpoint_state(endpoint: str) -> _Endpoint:
    with _endpoints_lock:
        return _endpoints.setdefault(endpoint, _Endpoint())


# Set around one call, so the HTTP client's response hook knows whose headers it reads.
_current_call: ContextVar[tuple[str, str] | None] = ContextVar("promptdag_call", default=None)


def calling(endpoint: str, model: str) -> Any:
    """Mark the current context as calling `model` at `endpoint` (returns the reset token)."""
    return _current_call.set((endpoint, model))


def done_calling(token: Any) -> None:
    _current_call.reset(token)


def header_buckets(endpoint: str, model: str) -> list[tuple[str, TokenBucket]]:
    """(unit, bucket) the endpoint's headers have set up for this model."""
    state = endpoint_state(endpoint)
    with state.lock:
        return [(unit, b) for (m, unit), b in state.buckets.items() if m == model]


def pause_left(endpoint: str) -> float:
    """Seconds until a 429's Retry-After for this endpoint has passed (0: not paused)."""
    return max(0.0, endpoint_state(endpoint).paused_until - time.monotonic())


def observe(endpoint: str, model: str, status: int, headers: Mapping[str, str]) -> None:
    """Learn from one answer's headers: limits left, refill times, a 429's Retry-After."""
    lowered = {k.lower(): v for k, v in headers.items()}
    state = endpoint_state(endpoint)
    if status == 429:
        wait = retry_after_seconds(lowered)
        if wait is not None:
            with state.lock:
                state.paused_until = max(state.paused_until, time.monotonic() + wait)
    for unit, (limit, remaining, reset) in parse_limits(lowered).items():
        with state.lock:
            bucket = state.buckets.get((model, unit))
            if bucket is None:
                bucket = state.buckets[(model, unit)] = TokenBucket(limit, limit / 60.0)
        bucket.follow(limit, remaining, reset)


def parse_limits(headers: Mapping[str, str]) -> dict[str, tuple[float, float, float | None]]:
    """unit -> (limit, remaining, seconds until full) from OpenAI's or Anthropic's headers
    (lower-cased names); units whose limit or remaining is missing are left out."""
    found: dict[str, tuple[float, float, float | None]] = {}
    for unit in ("requests", "tokens"):  # OpenAI: x-ratelimit-limit-tokens ...
        limit = _number(headers.get(f"x-ratelimit-limit-{unit}"))
        remaining = _number(headers.get(f"x-ratelimit-remaining-{unit}"))
        if limit and remaining is not None:
            found[unit] = (limit, remaining, duration(headers.get(f"x-ratelimit-reset-{unit}")))
    for unit in ("requests", "tokens", "input-tokens", "output-tokens"):  # Anthropic
        limit = _number(headers.get(f"anthropic-ratelimit-{unit}-limit"))
        remaining = _number(headers.get(f"anthropic-ratelimit-{unit}-remaining"))
        if limit and remaining is not None:
            reset = _until(headers.get(f"anthropic-ratelimit-{unit}-reset"))
            found[unit] = (limit, remaining, reset)
    return found


def units_of(unit: str, tokens_in: int, tokens_out: int) -> int:
    """How much of a header unit one call takes."""
    return {"requests": 1, "tokens": tokens_in + tokens_out, "input-tokens": tokens_in,
            "output-tokens": tokens_out}.get(unit, 0)


def duration(value: str | None) -> float | None:
    """OpenAI's reset durations: `1s`, `6m0s`, `20ms`, `1h2m3.5s` (None when unreadable)."""
    if not value:
        return None
    parts = _DURATION.findall(value.strip())
    if not parts:
        return _number(value)
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)


def _until(value: str | None) -> float | None:
    """Seconds until an RFC 3339 time (Anthropic's resets)."""
    if not value:
        return None
    from datetime import datetime

    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - time.time())


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# Capacity: requests in flight per endpoint, one semaphore per (event loop, endpoint).
_capacity: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, tuple[int, asyncio.Semaphore]]
] = weakref.WeakKeyDictionary()
_slots_known: dict[str, int | None] = {}


async def capacity_of(endpoint: str, setting: int | None, base_url: str | None) -> int | None:
    """The endpoint's capacity: the setting, else llama.cpp's `total_slots` (for a base URL),
    else None (no limit)."""
    if setting:
        return setting
    if not base_url:
        return None
    if endpoint not in _slots_known:
        _slots_known[endpoint] = await props_slots(base_url)
    return _slots_known[endpoint]


def capacity_gate(endpoint: str, capacity: int) -> asyncio.Semaphore:
    """The semaphore holding `capacity` requests in flight to `endpoint` on this loop.

    A changed capacity (the setting, between two runs of one process) gets a new semaphore:
    the first one's size stayed fixed, so a second run at capacity 8 after one at 4 had kept
    4 requests in flight. Calls in flight on the old one finish there."""
    loop = asyncio.get_running_loop()
    gates = _capacity.setdefault(loop, {})
    found = gates.get(endpoint)
    if found is None or found[0] != capacity:
        found = gates[endpoint] = (capacity, asyncio.Semaphore(capacity))
    return found[1]


async def observe_response(response: Any) -> None:
    """An httpx response hook feeding `observe` with every answer's headers, for the call
    this context is making (`calling`); the adapters' HTTP clients carry it."""
    call = _current_call.get()
    if call is not None:
        observe(call[0], call[1], response.status_code, response.headers)
