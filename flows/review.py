"""Plan review in the objective flow: publish the plan, wait for a person through Prefect.

With `review: true` the objective pauses after planning (and after a reflection that adds
tasks, unless the reviewer chose "approve all") with a typed run input (`ReviewInput`, the
fields of `promptdag.engine.review.ReviewAnswer`), which the Prefect UI shows as a form under the
run's Resume button. How it waits depends on where it runs:

- a deployment run *suspends* (`suspend_flow_run`): its process ends and the worker is free;
  the answer reschedules it, and the run starts again from the top, reusing its plan (the
  planner's result is cached for the run) and taking the same review's answer (each pause
  has a fixed key, `review-<round>-<attempt>`, which Prefect lets fire once per run);
- any other run (the CLI, a script, a test) *pauses* (`pause_flow_run`): the process waits,
  polling the API every `POLL_SECONDS`.

A review nobody answers within `review_timeout_seconds` ends the run. A paused run answers
itself "reject" through the API (recorded as its input, reason "not reviewed within N s") and
returns its result: failed, `stop_reason: rejected`, the error saying so. A suspended run has
no process left to do that: Prefect's server marks it Failed ("The flow was paused and never
resumed"), and refuses an answer after that.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from uuid import UUID

from prefect.input import RunInput

from promptdag.engine.estimate import Estimate, estimate
from promptdag.engine.objective import ObjectiveConfig, PlannedTask, check_plan, plan_to_spec
from promptdag.engine.review import (
    ReviewAnswer,
    ReviewRequest,
    announce,
    parse_tasks,
    plan_json,
    review_markdown,
    review_text,
    same_plan,
)
from promptdag.errors import SpecError
from promptdag.flows.latency_history import amodel_latencies
from promptdag.spec.graph import build_graph

POLL_SECONDS = 1  # a paused run's check for an answer: one small API read
PAUSE_GRACE_SECONDS = 120  # Prefect's own deadline for a paused run, after ours
_log = logging.getLogger("promptdag.engine.review")


class ReviewInput(RunInput, ReviewAnswer):
    """The Resume form of a plan waiting for review."""


@dataclass(frozen=True)
class ReviewOutcome:
    """What the reviewer decided: the tasks to run, or why nothing more runs."""

    tasks: list[PlannedTask]
    approve_all: bool = False
    edited: bool = False
    rejected: str | None = None  # the reason, when the plan is not to run
    estimate: Estimate | None = None


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except Exception:
        return _log


async def plan_estimate(
    tasks: list[PlannedTask], config: ObjectiveConfig, earlier: dict[str, str],
    history: bool = True,
) -> Estimate:
    """The plan's estimate; with `history`, from past runs' medians too (one API read: worth
    it while a person reviews, not for every round of every run)."""
    spec = check_plan(tasks, config, earlier)
    return estimate(spec, build_graph(spec), await amodel_latencies() if history else None)


async def review_plan(
    tasks: list[PlannedTask],
    config: ObjectiveConfig,
    earlier: dict[str, str],
    round_no: int,
    key: str,
) -> ReviewOutcome:
    """Publish the plan (artifact `<key>-plan`) and wait for a reviewer's answer.

    Args:
        tasks: the planned (or follow-up) tasks; an edit is checked like a planner's plan.
        config: the objective's config (its checks, breadth and review timeout).
        earlier: results of earlier rounds (a plan may depend on their tasks).
        round_no: the round the plan is for.
        key: the run's artifact key stem.
    """
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout

    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is None:
        raise RuntimeError("a plan review happens inside the objective's flow run")

    error: str | None = None
    attempt = 1
    while True:
        spec = plan_to_spec(tasks, "plan", config, earlier)  # as the round will run it
        graph = build_graph(spec)
        found = estimate(spec, graph, await amodel_latencies())
        description = review_markdown(tasks, graph, found, round_no, error)
        await _publish(description, key, round_no)
        form = ReviewInput.with_initial_data(description=description, tasks=plan_json(tasks))
        pause_key = f"review-{round_no}-{attempt}"  # fires once per run: replays skip it
        announce(ReviewRequest(flow_run_id=str(flow_run.id), round_no=round_no,
                               text=review_text(tasks, graph, found, round_no),
                               plan=plan_json(tasks), error=error, key=pause_key))
        try:
            answer = await _wait(form, config, pause_key, flow_run.id,
                                 deployment=flow_run.deployment_id is not None)
        except FlowPauseTimeout:
            _logger().warning("Review of round %d: nobody answered within %g s",
                              round_no, config.review_timeout_seconds)
            return ReviewOutcome(
                tasks=tasks, estimate=found,
                rejected=f"the plan of round {round_no} was not reviewed within "
                f"{config.review_timeout_seconds:g} s (review_timeout_seconds); it did not run")
        if answer.decision == "reject":
            reason = answer.reason.strip()
            return ReviewOutcome(tasks=tasks, estimate=found, rejected=(
                f"the plan of round {round_no} was rejected at review"
                + (f": {reason}" if reason else "")))
        try:
            chosen = _chosen_tasks(answer, tasks)
            check_plan(chosen, config, earlier)
        except SpecError as exc:
            error = str(exc)
            _logger().warning("Review of round %d: the edited plan was not accepted: %s",
                              round_no, error)
            attempt += 1
            continue
        edited = not same_plan(chosen, tasks)
        if edited:
            _logger().info("Review of round %d: running the edited plan (%d tasks)",
                           round_no, len(chosen))
            found = await plan_estimate(chosen, config, earlier)
        return ReviewOutcome(tasks=chosen, approve_all=answer.approve_all, edited=edited,
                             estimate=found)


def _chosen_tasks(answer: ReviewAnswer, proposed: list[PlannedTask]) -> list[PlannedTask]:
    if answer.decision == "edit" and not answer.tasks.strip():
        raise SpecError("decision 'edit' needs the edited plan in 'tasks'")
    if not answer.tasks.strip():
        return proposed
    return parse_tasks(answer.tasks)


async def _wait(form: type[ReviewInput], config: ObjectiveConfig, key: str, run_id: UUID,
                deployment: bool) -> ReviewAnswer:
    """The answer; FlowPauseTimeout when nobody gave one in time."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import apause_flow_run, asuspend_flow_run

    timeout = max(1, int(config.review_timeout_seconds))
    if deployment:  # the process ends here until the answer comes (Prefect's Pause signal)
        return await asuspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
    # Prefect fails a run whose pause outlives its deadline, result and all; so the deadline
    # it keeps is later than ours, and at ours the run answers itself "reject" through the API
    # (recorded as its input, like anyone's answer), and ends with its result.
    try:
        return await asyncio.wait_for(
            apause_flow_run(wait_for_input=form, timeout=timeout + PAUSE_GRACE_SECONDS,
                            poll_interval=POLL_SECONDS, key=key),
            timeout,
        )
    except asyncio.TimeoutError:
        pass
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_base_key

    expired = ReviewAnswer(decision="reject", reason=f"not reviewed within {timeout} s")
    answer = expired.model_dump(mode="json", exclude={"tasks"})
    async with get_client() as client:
        response = await client.resume_flow_run(run_id, run_input=answer)
    if response.status.value != "ACCEPT":  # answered at the last moment: that answer stands
        return await form.aload(keyset_from_base_key(f"paused-{key}"))
    raise FlowPauseTimeout(expired.reason)


async def _publish(markdown: str, key: str, round_no: int) -> None:
    """The plan as a markdown artifact: never fails the review (the form carries it too)."""
    from prefect.artifacts import acreate_markdown_artifact

    try:
        await acreate_markdown_artifact(markdown, key=f"{key}-plan",
                                        description=f"Plan of round {round_no}, for review")
    except Exception as exc:
        _logger().warning("The plan artifact was not created: %s", exc)
