"""Plan review in a local run: the objective pauses (Prefect's pause_flow_run with a typed run
input) until an answer comes through Prefect's API; the answer decides what runs."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Callable, Iterator

import pytest

from promptdag.api import arun_objective
from promptdag.engine.review import ReviewAnswer, ReviewRequest, add_reviewer
from promptdag.remote.review_client import aanswer_in_process

FAST = {"retry_backoff_seconds": 0, "review": True}


@pytest.fixture
def reviews() -> Iterator[Callable[[list[ReviewAnswer]], list[ReviewRequest]]]:
    """Answer each review of the run with the next of `answers`, from another thread, through
    Prefect's API (as `promptdag approve` would); returns the requests seen."""
    removers: list[Callable[[], None]] = []

    def answer_with(answers: list[ReviewAnswer]) -> list[ReviewRequest]:
        seen: list[ReviewRequest] = []
        pending = list(answers)

        def reviewer(request: ReviewRequest) -> None:
            seen.append(request)
            if pending:
                answer, context = pending.pop(0), contextvars.copy_context()
                threading.Thread(target=context.run, args=(asyncio.run, aanswer_in_process(
                    request.flow_run_id, answer, request.key)), daemon=True).start()

        removers.append(add_reviewer(reviewer))
        return seen

    yield answer_with
    for remove in removers:
        remove()


async def test_approve_runs_the_plan_and_approve_all_asks_once(reviews) -> None:
    seen = reviews([ReviewAnswer(decision="approve", approve_all=True)])
    result = await arun_objective("Map the market", config={
        **FAST, "depth": 2, "model_options": {"extra_rounds": 5}})
    assert (result.status, result.stop_reason, len(result.rounds)) == (
        "completed", "depth_reached", 2)
    assert len(seen) == 1 and seen[0].round_no == 1 and "estimated time" in seen[0].text
    assert result.rounds[0].estimate is not None and not result.rounds[0].edited


async def test_an_invalid_edit_is_refused_and_the_run_waits_for_a_valid_one(reviews) -> None:
    bad = json.dumps([{"name": "Only", "prompt": "x", "depends_on": ["Nope"]}])
    good = json.dumps({"tasks": [{"name": "Look", "prompt": "Look around", "depends_on": []},
                                 {"name": "Sum up", "prompt": "Sum up", "depends_on": ["Look"]}]})
    seen = reviews([ReviewAnswer(decision="edit", tasks=bad),
                    ReviewAnswer(decision="edit", tasks=good)])
    result = await arun_objective("Plan a trip", config=FAST)
    assert [r.error for r in seen] == [
        None, "task 'Only' depends on 'Nope', which does not exist"]
    assert result.status == "completed"
    assert [t.name for t in result.rounds[0].plan.tasks] == ["Look", "Sum up"]
    assert [t.name for t in result.rounds[0].result.tasks] == ["Look", "Sum up"]  # type: ignore[union-attr]
    assert result.rounds[0].edited


async def test_reject_ends_the_run_with_no_task_run(reviews) -> None:
    reviews([ReviewAnswer(decision="reject", reason="too broad")])
    result = await arun_objective("Plan a trip", config=FAST)
    assert (result.status, result.stop_reason, result.rounds) == ("failed", "rejected", [])
    assert result.error == "the plan of round 1 was rejected at review: too broad"
    assert result.final_answer is None


async def test_a_review_nobody_answers_times_out_as_rejected(reviews) -> None:
    reviews([])
    result = await arun_objective("Plan a trip", config={**FAST, "review_timeout_seconds": 1})
    assert (result.status, result.stop_reason, result.rounds) == ("failed", "rejected", [])
    assert result.error and "not reviewed within 1 s" in (result.error or "")


async def test_a_reflection_that_adds_tasks_is_reviewed_and_rejecting_it_keeps_the_answer(
    reviews,
) -> None:
    seen = reviews([ReviewAnswer(decision="approve"), ReviewAnswer(decision="reject")])
    result = await arun_objective("Map the market", config={
        **FAST, "depth": 3, "model_options": {"extra_rounds": 5}})
    assert [r.round_no for r in seen] == [1, 2]
    assert (result.status, result.stop_reason, len(result.rounds)) == (
        "completed", "rejected", 1)
    assert result.error == "the plan of round 2 was rejected at review"
    assert result.final_answer  # synthesised from round 1


async def test_an_answer_sent_between_the_pause_and_its_form_waits_for_the_form() -> None:
    """Prefect sets a run Paused a moment before it saves the form's schema; an answer sent in
    that moment (the CLI answers its own review at once) waits for the form instead of being
    refused with "Run input schema not found"."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Paused

    from promptdag.remote.review_client import aanswer_review

    @flow
    def objective() -> None: ...

    async with get_client() as client:
        run = await client.create_flow_run(objective)
        paused = Paused(timeout_seconds=120, pause_key="review-1-1")
        keyset = keyset_from_paused_state(paused)
        paused.state_details.run_input_keyset = keyset
        await client.set_flow_run_state(run.id, paused, force=True)

        async def save_form_late() -> None:
            await asyncio.sleep(1.0)
            await client.create_flow_run_input(
                run.id, keyset["schema"], json.dumps(ReviewAnswer.model_json_schema()))

        saver = asyncio.create_task(save_form_late())
        await aanswer_review(run.id, ReviewAnswer(decision="approve"), 5.0, client,
                             pause_key="review-1-1")
        await saver
        resumed = await client.read_flow_run(run.id)
    assert resumed.state is not None and not resumed.state.is_paused()
