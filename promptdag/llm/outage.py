"""Outages are one problem, not N: a circuit breaker per endpoint.

When a call cannot connect to its endpoint (refused, reset, no such host: the request never got an
answer), the endpoint is marked down and ONE prober per event loop watches it (`GET /health` on
the server root, backing off from 0.2 s to 2 s; any answer below 500 means up; llama.cpp's 503
"Loading model" means not yet). Every call to that endpoint, the failed one included, waits until
the prober sees it up and then sends. This is not a retry: the request never reached a model,
so no Prefect retry is spent, and N concurrent tasks do not each burn their retries on one
restart.

The wait has a budget (`PROMPTDAG_OUTAGE_BUDGET_SECONDS`, the `outage_budget_s` model option),
counted from when the endpoint went down, not from when each call arrived; once spent, every
waiting and every new call fails at once with `endpoint <url> unreachable for <budget> s`. The
down-since instant is shared by every event loop of the process (the sync API runs a loop per
call); the prober and its wake-up event belong to one loop. A call that gets any answer from the
endpoint clears the state.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from promptdag.errors import PermanentProviderError

T = TypeVar("T")

FIRST_PROBE_DELAY = 0.2
MAX_PROBE_DELAY = 2.0
PROBE_TIMEOUT = 1.0


@dataclass
class _Down:
    since: float  # time.monotonic() of the first failure
    up_seen: bool = False  # the prober saw it answer; calls may try again


@dataclass
class _Prober:
    up: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    waiters: int = 0


_lock = threading.Lock()
_down: dict[str, _Down] = {}
_probers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Prober]] = (
    weakref.WeakKeyDictionary()
)


def health_url(endpoint: str) -> str:
    """What the prober asks: the server root's `/health` (llama.cpp, vLLM, TGI answer it; any
    other answer below 500, a 404 included, still proves the server is up)."""
    root = endpoint[: -len("/v1")] if endpoint.endswith("/v1") else endpoint
    return f"{root}/health"


def is_down(endpoint: str) -> bool:
    with _lock:
        state = _down.get(endpoint)
        return state is not None and not state.up_seen


def mark_down(endpoint: str) -> None:
    """A call could not connect: the endpoint is down (since now, unless it already was)."""
    with _lock:
        state = _down.get(endpoint)
        if state is None:
            _down[endpoint] = _Down(since=time.monotonic())
        else:
            state.up_seen = False


def mark_up(endpoint: str) -> None:
    """A call got an answer: the outage (if any) is over."""
    with _lock:
        _down.pop(endpoint, None)


async def call_through(
    endpoint: str,
    budget: float,
    send: Callable[[], Awaitable[T]],
    cannot_connect: Callable[[BaseException], bool],
) -> T:
    """`send()` once the endpoint is up; wait (within the outage budget) whenever it cannot
    connect. Other exceptions, and answers, go to the caller as they are."""
    while True:
        await wait_until_up(endpoint, budget)
        try:
            result = await send()
        except Exception as exc:
            if not cannot_connect(exc):
                mark_up(endpoint)  # an HTTP answer (even an error) proves it is up
                raise
            mark_down(endpoint)
            continue
        mark_up(endpoint)
        return result


async def wait_until_up(endpoint: str, budget: float) -> None:
    """Return at once when the endpoint is not known to be down; else wait for the prober,
    or fail when the outage has lasted `budget` seconds."""
    with _lock:
        state = _down.get(endpoint)
        if state is None or state.up_seen:
            return
        since = state.since
    remaining = since + budget - time.monotonic()
    if remaining <= 0:
        # Spent: fail at once, unless it has come back meanwhile (one quick look).
        if await probe(endpoint):
            _saw_up(endpoint)
            return
        raise unreachable(endpoint, budget)
    prober = _prober(endpoint)
    prober.waiters += 1
    try:
        await asyncio.wait_for(prober.up.wait(), remaining)
    except TimeoutError:
        raise unreachable(endpoint, budget) from None
    finally:
        prober.waiters -= 1


def unreachable(endpoint: str, budget: float) -> PermanentProviderError:
    return PermanentProviderError(f"endpoint {endpoint} unreachable for {budget:g} s")


def _prober(endpoint: str) -> _Prober:
    loop = asyncio.get_running_loop()
    probers = _probers.setdefault(loop, {})
    prober = probers.get(endpoint)
    if prober is None or prober.up.is_set() or (prober.task and prober.task.done()):
        prober = probers[endpoint] = _Prober()
        prober.task = loop.create_task(_watch(endpoint, prober), name=f"probe {endpoint}")
    return prober


async def _watch(endpoint: str, prober: _Prober) -> None:
    """Probe until the endpoint answers (wake every waiter) or nobody waits any more."""
    delay = FIRST_PROBE_DELAY
    while True:
        if not is_down(endpoint) or await probe(endpoint):  # up, or another loop got through
            _saw_up(endpoint)
            prober.up.set()
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_PROBE_DELAY)
        if prober.waiters == 0:  # every waiter gave up (budget spent): stop watching
            return


def _saw_up(endpoint: str) -> None:
    with _lock:
        state = _down.get(endpoint)
        if state is not None:
            state.up_seen = True


async def probe(endpoint: str) -> bool:
    """One cheap look: does the server answer (below 500) a GET of its health URL?"""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
            response = await client.get(health_url(endpoint))
    except httpx.HTTPError:
        return False
    return response.status_code < 500
