"""Per-provider limits: those that hold across concurrent flow runs (Prefect global
concurrency limits) and the pacing of each call (`pace`), off by default.

With `PROMPTDAG_PROVIDER_LIMITS='{"openai": {"max_in_flight": 8, "requests_per_second": 5}}'`,
each call to that provider first takes a token of the rate limit `promptdag:openai:rate` (slots
decay at `requests_per_second`), then holds a slot of `promptdag:openai` (at most `max_in_flight`)
for the call. Both live in the Prefect server, so they bind every flow run and process that uses
it; each process creates them, or updates them to its settings, the first time it uses them.

Time spent waiting for a slot counts against the task's timeout (the HTTP timeout is computed
after the slot is granted). Server-side slots are slow to hand over (a refused acquisition backs
off for a server-chosen interval), so a workflow's breadth limit never depends on them: that
one is the scheduler's, in memory; and so is an endpoint's `capacity`.

`pace` wraps one HTTP call (tasks/paced_model.py): the endpoint's 429 pause, the in-process token
buckets (requests and tokens per minute, per provider or base URL and per model, and those the
rate-limit headers set up, promptdag/llm/rate_limits.py), the same per-minute limits in the
Prefect server (`promptdag:<key>:rpm`, `promptdag:<key>:tpm`, `promptdag:<key>:<model>:tpm`) so
every run shares them, then the endpoint's capacity. The in-process buckets do the fine pacing
(a reservation queue, handed over at once); the server's limits, decaying at the same rate, are
taken a tenth of a window at a time (`_take_shared`), so they are normally free and bind only
when other processes use the same account.
"""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.exceptions import ObjectAlreadyExists

from promptdag.llm import rate_limits
from promptdag.llm.base import Usage
from promptdag.llm.rate_limits import TokenBucket
from promptdag.llm.registry import split_model
from promptdag.settings import ModelLimit, ProviderLimit, get_settings

_ensured: set[tuple[str, int, float | None]] = set()
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def limit_names(provider: str) -> tuple[str, str]:
    """(concurrency limit, rate limit) names for a provider."""
    return f"promptdag:{provider}", f"promptdag:{provider}:rate"


async def _ensure(name: str, limit: int, decay: float | None) -> None:
    if (name, limit, decay) in _ensured:
        return
    async with _lock(), get_client() as client:
        if (name, limit, decay) in _ensured:
            return
        try:
            await client.upsert_global_concurrency_limit_by_name(name, limit, decay)
        except ObjectAlreadyExists:  # another process created it between read and create
            await client.upsert_global_concurrency_limit_by_name(name, limit, decay)
        _ensured.add((name, limit, decay))


def _lock() -> asyncio.Lock:
    """One lock per event loop: concurrent tasks of a run create a limit once."""
    loop = asyncio.get_running_loop()
    if loop not in _locks:
        _locks[loop] = asyncio.Lock()
    return _locks[loop]


async def ensure_limits(provider: str, limit: ProviderLimit) -> None:
    """Create or update the provider's limits in the Prefect server (once per process)."""
    in_flight, rate = limit_names(provider)
    if limit.requests_per_second:
        burst = max(1, math.ceil(limit.requests_per_second))
        await _ensure(rate, burst, limit.requests_per_second)
    if limit.max_in_flight:
        await _ensure(in_flight, limit.max_in_flight, None)


@asynccontextmanager
async def provider_slot(model: str) -> AsyncIterator[None]:
    """Hold the provider's cross-run slot (if a limit is configured) around one model call."""
    provider = split_model(model)[0]
    limit = get_settings().provider_limits.get(provider)
    if limit is None:
        yield
        return
    await ensure_limits(provider, limit)
    in_flight, rate = limit_names(provider)
    if limit.requests_per_second:
        await rate_limit(rate, occupy=1, strict=True)
    if limit.max_in_flight:
        async with concurrency(in_flight, occupy=1, strict=True):
            yield
    else:
        yield


@dataclass
class _Held:
    """What one paced call took, to correct from its usage."""

    tokens: int
    buckets: list[tuple[str, TokenBucket]] = field(default_factory=list)  # (unit, bucket)
    shared_tpm: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0


BURST_SHARE = 0.9
SHARED_CHUNK_SHARE = 0.1  # of a shared limit's window: what one request to the server takes
_credit: dict[str, int] = {}  # units the server granted this process and no call used yet
_credit_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def _take_shared(name: str, occupy: int, per_window: int) -> None:
    """Take `occupy` units of the server's limit `name`, from what this process was granted
    already, else with one request for a tenth of the window (at least `occupy`).

    One request per call would pace badly: Prefect serialises a process's acquisitions of a
    limit, a refusal makes every later one wait its Retry-After, and the server decays a
    limit by whole units since its last update, so many small, frequent requests see
    little decay. Chunks keep the server's share of the pacing coarse; the in-process
    buckets, which ran first, keep it fine.
    """
    locks = _credit_locks.setdefault(asyncio.get_running_loop(), {})
    async with locks.setdefault(name, asyncio.Lock()):
        if _credit.get(name, 0) < occupy:
            chunk = min(per_window, max(occupy, math.ceil(per_window * SHARED_CHUNK_SHARE)))
            await rate_limit(name, occupy=chunk, strict=True)
            _credit[name] = _credit.get(name, 0) + chunk
        _credit[name] -= occupy
_buckets: dict[tuple[str, str, str, float, float], TokenBucket] = {}


def _bucket(key: str, model: str, unit: str, per_window: float, window: float) -> TokenBucket:
    """One in-process bucket per (key, model, unit) and setting: `per_window` units refilled
    over `window` seconds, full at start. Its burst is `BURST_SHARE` of the window: a provider
    counts a request when it arrives, later than we do, and a full bucket here may not yet be
    full there."""
    ident = (key, model, unit, per_window, window)
    bucket = _buckets.get(ident)
    if bucket is None:
        bucket = _buckets.setdefault(
            ident, TokenBucket(max(1.0, per_window * BURST_SHARE), per_window / window))
    return bucket


def limit_name(key: str, model: str, unit: str) -> str:
    """The Prefect limit holding a per-minute limit (a base URL's characters made safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.:-]", "_", key)
    return f"promptdag:{safe}:{model}:{unit}" if model else f"promptdag:{safe}:{unit}"


def _per_minute(key: str, limit: ProviderLimit) -> list[tuple[str, str, ModelLimit]]:
    return [(key, "", limit)] + [(key, m, ml) for m, ml in limit.models.items()]


@asynccontextmanager
async def pace(
    model: str, endpoint: str, base_url: str | None, tokens_in: int, tokens_out: int
) -> AsyncIterator[_Held]:
    """Hold what one HTTP call needs of its provider (see module docstring); the caller
    reports the answer's usage with `settle_usage`."""
    provider, model_id = split_model(model)
    settings = get_settings()
    configs = [(key, limit) for key in dict.fromkeys((provider, endpoint))
               if (limit := settings.provider_limits.get(key)) is not None]
    held = _Held(tokens_in + tokens_out, tokens_in=tokens_in, tokens_out=tokens_out)
    wait = rate_limits.pause_left(endpoint) if settings.rate_limit_headers else 0.0
    shared: list[tuple[str, int, float]] = []  # (limit name, occupy, per second)
    for key, limit in configs:
        for scope_key, scope_model, scoped in _per_minute(key, limit):
            if scope_model and scope_model != model_id:
                continue
            for unit, per_window, amount in (("rpm", scoped.requests_per_minute, 1),
                                             ("tpm", scoped.tokens_per_minute, held.tokens)):
                if not per_window:
                    continue
                bucket = _bucket(scope_key, scope_model, unit, per_window, limit.window_seconds)
                wait = max(wait, bucket.reserve(amount))
                held.buckets.append(("tokens" if unit == "tpm" else "requests", bucket))
                if limit.shared:
                    name = limit_name(scope_key, scope_model, unit)
                    shared.append((name, int(per_window), per_window / limit.window_seconds))
                    if unit == "tpm":
                        held.shared_tpm.append(name)
    if settings.rate_limit_headers:
        for unit, bucket in rate_limits.header_buckets(endpoint, model_id):
            wait = max(wait, bucket.reserve(rate_limits.units_of(unit, tokens_in, tokens_out)))
            held.buckets.append((unit, bucket))
    while wait > 0:  # a 429 seen meanwhile pauses this call too
        await asyncio.sleep(wait)
        wait = rate_limits.pause_left(endpoint) if settings.rate_limit_headers else 0.0
    for name, per_window, per_second in shared:
        await _ensure(name, per_window, per_second)
        occupy = held.tokens if name in held.shared_tpm else 1
        await _take_shared(name, min(occupy, per_window), per_window)
    capacity = await rate_limits.capacity_of(
        endpoint, next((limit.capacity for _, limit in configs if limit.capacity), None), base_url
    )
    async with AsyncExitStack() as stack:
        if capacity:
            await stack.enter_async_context(rate_limits.capacity_gate(endpoint, capacity))
        token = rate_limits.calling(endpoint, model_id) if settings.rate_limit_headers else None
        try:
            yield held
        finally:
            if token is not None:
                rate_limits.done_calling(token)


async def settle_usage(held: _Held, usage: Usage | None) -> None:
    """Charge the buckets what a call used (its answer's usage; None: a call that failed or
    did not say is charged its estimate), and give the server's limits back what it did not."""
    if usage is None:
        usage = Usage(input_tokens=held.tokens_in, output_tokens=held.tokens_out)
    used = {"tokens": usage.input_tokens + usage.output_tokens, "requests": 1,
            "input-tokens": usage.input_tokens, "output-tokens": usage.output_tokens}
    estimated = {"tokens": held.tokens, "input-tokens": held.tokens_in,
                 "output-tokens": held.tokens_out, "requests": 1}
    for unit, bucket in held.buckets:
        bucket.settle(estimated[unit], used[unit])
    spare = held.tokens - used["tokens"]
    if spare > 0:  # what the server's limit granted and the call did not use: the next call's
        for name in held.shared_tpm:
            _credit[name] = _credit.get(name, 0) + spare
