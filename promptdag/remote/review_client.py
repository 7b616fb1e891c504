"""Answer a plan waiting for review, from any process, through Prefect's API.

`answer_review(run_id, ReviewAnswer(...))` is what `promptdag approve` and `promptdag reject`
call, and what the terminal of `promptdag objective --review` uses: Prefect's
`resume_flow_run` with the answer as the run input, which the server checks against the form's
schema before it resumes the run (the same path as the UI's Resume button). Prefect is imported
when called.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from promptdag.engine.review import ReviewAnswer
from promptdag.errors import ConfigError, SpecError

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

WAIT_FOR_PAUSE_SECONDS = 30.0  # a run that is about to pause (the CLI's own review) gets this
WAIT_FOR_FORM_SECONDS = 30.0  # a paused run saves its form just after pausing


def _waiting(flow_run: FlowRun, pause_key: str | None = None) -> bool:
    state = flow_run.state
    return bool(state and state.is_paused() and state.state_details.run_input_keyset
                and (pause_key is None or state.state_details.pause_key == pause_key))


async def _wait_until_waiting(
    client: PrefectClient, run_id: UUID, wait: float, pause_key: str | None
) -> FlowRun:
    deadline = time.monotonic() + wait
    while True:
        flow_run = await client.read_flow_run(run_id)
        if _waiting(flow_run, pause_key) or time.monotonic() >= deadline:
            return flow_run
        await asyncio.sleep(0.2)


async def _wait_for_form(client: PrefectClient, flow_run: FlowRun, wait: float) -> None:
    """Prefect sets a run Paused first and saves the form's schema a moment later; a resume in
    between is refused ("Run input schema not found"), so wait for the schema."""
    from prefect.exceptions import PrefectHTTPStatusError

    keyset = flow_run.state.state_details.run_input_keyset if flow_run.state else None
    if not keyset or "schema" not in keyset:
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            await client.read_flow_run_input(flow_run.id, keyset["schema"])
            return
        except PrefectHTTPStatusError as error:
            if error.response.status_code != 404 or time.monotonic() >= deadline:
                return  # the resume below says what Prefect thinks
            await asyncio.sleep(0.1)


async def aanswer_review(
    run_id: str | UUID, answer: ReviewAnswer, wait: float = 0.0,
    client: PrefectClient | None = None, pause_key: str | None = None,
) -> None:
    """Resume a run waiting for review with `answer`.

    Args:
        run_id: the objective's flow run.
        answer: the decision (and edited tasks).
        wait: seconds to wait for the run to reach its review (0: it must be waiting now).
        client: a Prefect client to use (default: one for the configured server).
        pause_key: answer only this review (`review-<round>-<attempt>`), not a later one.

    Raises:
        SpecError: not a run id, no such run, or the run is not waiting for a review.
        ConfigError: no reachable server; Prefect refused the answer.
    """
    if client is None:
        from promptdag.remote.client import _connect

        async with _connect() as connected:
            return await aanswer_review(run_id, answer, wait, connected, pause_key)
    from promptdag.remote.client import _read_run

    flow_run = await _read_run(client, run_id)
    if not _waiting(flow_run, pause_key) and wait > 0:
        flow_run = await _wait_until_waiting(client, flow_run.id, wait, pause_key)
    if pause_key and _waiting(flow_run) and not _waiting(flow_run, pause_key):
        raise SpecError(f"run {flow_run.id}: that review was answered elsewhere; the run "
                        "waits for another one now")
    if not _waiting(flow_run, pause_key):
        state = flow_run.state.name if flow_run.state else "no state"
        raise SpecError(f"run {flow_run.id} is not waiting for a review (it is {state}): only "
                        "an objective run with review: true, paused after planning, takes one")
    await _wait_for_form(client, flow_run, max(wait, WAIT_FOR_FORM_SECONDS))
    response = await client.resume_flow_run(flow_run.id, run_input=_run_input(answer))
    if response.status.value != "ACCEPT":
        reason = getattr(response.details, "reason", None) or response.status.value
        raise ConfigError(f"Prefect did not resume run {flow_run.id}: {reason}")


def _run_input(answer: ReviewAnswer) -> dict[str, Any]:
    data = answer.model_dump(mode="json")
    if not answer.tasks:  # approve or reject as proposed: the form's prefilled plan stays
        data.pop("tasks")
    return data


def answer_review(run_id: str | UUID, answer: ReviewAnswer, wait: float = 0.0) -> None:
    """Synchronous `aanswer_review` (for scripts and the CLI)."""
    asyncio.run(aanswer_review(run_id, answer, wait))


async def aanswer_in_process(run_id: str, answer: ReviewAnswer, pause_key: str | None = None
                             ) -> None:
    """Answer a review of a run in this process's own Prefect API (the CLI's terminal review):
    the run is about to pause, so wait for it."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await aanswer_review(run_id, answer, WAIT_FOR_PAUSE_SECONDS, client,
                             pause_key=pause_key)
