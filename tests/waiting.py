"""Waiting in tests for what another process or the Prefect server delivers later.

A busy machine delivers late, not never: a test polls for the condition with a generous
deadline (a wait, not a measure: the normal case returns at the first look) and fails, saying
what it waited for, only when the deadline passes. Prefect's server records task runs from
their events, after a retry a minute on when SQLite is busy, so a test reads them through
`recorded_task_runs`, never once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.schemas.objects import TaskRun

T = TypeVar("T")

PATIENCE_S = 240.0  # for what the Prefect server records from events (see the docstring)


def wait_until(check: Callable[[], T], timeout: float, what: str = "",
               every: float = 0.25) -> T:
    """`check()`'s first truthy value; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g} s: {what or check}: {value!r}")
        time.sleep(every)
    return value


async def await_until(check: Callable[[], Awaitable[T]], timeout: float, what: str = "",
                      every: float = 0.25) -> T:
    """`await check()`'s first truthy value; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g} s: {what or check}: {value!r}")
        await asyncio.sleep(every)
    return value


async def recorded_task_runs(flow_run_id: UUID | str, until: Callable[[list[TaskRun]], Any],
                             timeout: float = PATIENCE_S) -> list[TaskRun]:
    """The flow run's task runs once `until(task_runs)` holds (AssertionError after `timeout`
    s, with what the server had recorded)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    seen: list[TaskRun] = []

    async def read() -> bool:
        nonlocal seen
        async with get_client() as client:
            seen = await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(str(flow_run_id))])), limit=200)
        return bool(until(seen))

    try:
        await await_until(read, timeout, every=0.5)
    except AssertionError:
        names = sorted(f"{t.name} ({t.state_name})" for t in seen)
        raise AssertionError(f"after {timeout:g} s the server had recorded these task runs "
                             f"of {flow_run_id}: {names}") from None
    return seen
