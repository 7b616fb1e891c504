"""A lost API: a local run whose Prefect server went away ends, its result from memory.

Task runs report through events, so a run goes on when its server dies; it is the flow run's
last calls (its final state, its artifacts) that Prefect's client retries for minutes, and then
its log and event workers at interpreter exit (minutes, with no result). A flow hands
its result to `remember` before those calls; `run_to_end` gives the API a short grace once the
result is known, then gives up on it and returns the result with a message saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import State

async def run_flow_run(
    flow: Flow[Any, Any], flow_run: FlowRun, parameters: dict[str, Any]
) -> State[Any]:
    """Run an existing flow run here, to its end; its final state.

    The parameters are quoted: they never hold futures, and Prefect would otherwise walk every
    node of a spec looking for them (a cost per task, before the first task starts)."""
    from prefect.flow_engine import run_flow_async
    from prefect.utilities.annotations import quote

    quoted = {name: quote(value) for name, value in parameters.items()}
    state = await run_flow_async(flow, flow_run=flow_run, parameters=quoted,
                                 return_type="state")
    return state  # type: ignore[return-value]


API_LOST = False  # set once a run gave up on its API: Prefect's log and event workers would
# retry sending to it for minutes at interpreter exit; the CLI then exits without waiting
LOST_API_GRACE_SECONDS = 10.0  # after the flow's result is known, before asking if the API is up
_finished: dict[str, tuple[float, Any]] = {}


def remember(flow_run_id: Any, result: Any) -> None:
    """Called by a flow with its result, before it reports it to the API (which may be gone)."""
    if flow_run_id is not None:
        _finished[str(flow_run_id)] = (time.monotonic(), result)
        while len(_finished) > 64:  # subflows' and workers' results are never asked for
            _finished.pop(next(iter(_finished)))


@dataclass
class Outcome:
    """How a local run ended: its final state, or, when the Prefect API went away before the
    run could report its end, its result from memory and why."""

    state: State[Any] | None
    result: Any = None
    lost_api: str | None = None

    async def value(self) -> Any:
        if self.state is None:
            return self.result
        return await self.state.aresult(raise_on_failure=False)


async def api_alive(timeout: float | None = None) -> bool:
    """Whether the API answers its health check. A refused connection (a dead server) says no
    at once; a slow answer (a busy server, its database locked) gets `timeout`, by default the
    `api_patience_seconds` setting: a busy server is not a lost one."""
    import httpx
    from prefect.settings import get_current_settings

    from promptdag.settings import get_settings

    url = get_current_settings().api.url
    if not url:
        return True  # an ephemeral API lives in this process
    try:
        patience = get_settings().api_patience_seconds if timeout is None else timeout
        async with httpx.AsyncClient(timeout=patience) as client:
            return (await client.get(f"{str(url).rstrip('/')}/health")).status_code < 500
    except httpx.HTTPError:
        return False


async def run_to_end(
    flow: Flow[Any, Any], flow_run: FlowRun, parameters: dict[str, Any]
) -> Outcome:
    """`run_flow_run`, but a run whose API went away ends: once the flow has its result, a run
    still reporting to an API that no longer answers is given up after a short grace (Prefect's
    client would retry for minutes) and the result comes from memory."""
    run = asyncio.ensure_future(run_flow_run(flow, flow_run, parameters))
    key = str(flow_run.id)
    try:
        while True:
            done, _ = await asyncio.wait({run}, timeout=1.0)
            if done:
                return Outcome(run.result())
            known = _finished.get(key)
            if known is None or time.monotonic() - known[0] < LOST_API_GRACE_SECONDS:
                continue
            if await api_alive() or run.done():  # it may have ended while we asked
                continue
            global API_LOST
            API_LOST = True
            run.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(run, timeout=5)
            from prefect.settings import get_current_settings

            why = (f"the Prefect API at {get_current_settings().api.url} stopped answering: "
                   f"this result is from memory and was not recorded there (flow run {key} "
                   "may show as Running; `promptdag retry` it once the server is back to "
                   "record it, reusing its saved tasks)")
            return Outcome(None, known[1], why)
    finally:
        _finished.pop(key, None)
