"""The planner: an objective in, a validated `Plan` (a DAG of prompt tasks) out.

Streamed (`stream_to` names a feed, tasks/feeds.py): the answer is read as it is written
(promptdag/engine/plan_stream.py) and each task, once complete and made runnable
(`accept_streamed`), goes into the feed at once, so the flow can start it while the planner
writes the rest. A model or server that cannot stream, or a streamed answer with no valid task,
takes the whole-plan path: one answer, validated as a whole, sent back once with its error.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from promptdag.engine.objective import (
    ObjectiveConfig,
    Plan,
    PlannedTask,
    accept_streamed,
    check_plan,
    plan_schema,
    repair_plan,
)
from promptdag.engine.plan_stream import PlanStream
from promptdag.llm.base import StreamUnsupported, Usage
from promptdag.tasks.feeds import Feed, find_feed
from promptdag.tasks.prompt_cache import ROLE_CACHE
from promptdag.tasks.role_call import ask_structured, stream_structured

PLANNER_SYSTEM = (
    "You plan work for a team of LLM workers. Break the objective into small, self-contained "
    "tasks. Tasks run in parallel unless one needs another's result: list those names in "
    "depends_on (use [] when a task needs nothing; only tasks listed before it). Prefer wide "
    "plans over long chains, and end with one task that synthesises the results. Each task's "
    "prompt must stand on its own; the results of its dependencies are appended to it "
    "automatically."
)


class PlannerOutput(BaseModel):
    plan: Plan
    usage: Usage
    streamed: bool = Field(False, description="Tasks were handed on as the answer streamed.")
    rejected: list[str] = Field(
        default_factory=list, description="Streamed tasks dropped, each with the reason."
    )


def planner_prompt(objective: str, context: dict[str, Any], config: ObjectiveConfig) -> str:
    return (
        f"Objective: {objective}\n"
        f"Context (JSON): {json.dumps(context, ensure_ascii=False, default=str)}\n"
        f"Use at most {config.max_tasks} tasks; up to {config.breadth} run at the same time.\n"
        "Answer with the plan as JSON."
    )


def _metadata(objective: str, context: dict[str, Any], config: ObjectiveConfig) -> dict[str, Any]:
    return {
        "role": "planner",
        "objective": objective,
        "context": context,
        "max_tasks": config.max_tasks,
        "breadth": config.breadth,
    }


@task(name="plan_objective", cache_policy=ROLE_CACHE, persist_result=True)  # resume
async def plan_objective(
    objective: str,
    context: dict[str, Any],
    config: ObjectiveConfig,
    stream_to: str | None = None,
) -> PlannerOutput:
    """Ask the planner model for a plan; streamed into the feed `stream_to` when it can be
    (see module docstring). An invalid whole plan is sent back once with its error."""
    spent = Usage()
    feed = find_feed(stream_to)
    if feed is not None:
        streamed, spent = await _stream_plan(objective, context, config, feed)
        if streamed is not None:
            return streamed
    plan, usage = await ask_structured(
        config.role_model("planner"),
        config.model_options,
        planner_prompt(objective, context, config),
        _metadata(objective, context, config),
        Plan,
        check=lambda p: check_plan(repair_plan(p.tasks, set()), config, {}),
        system=PLANNER_SYSTEM,
        schema=plan_schema(config.max_tasks),
        answer_tokens=config.structured_tokens(),
    )
    return PlannerOutput(plan=Plan(tasks=repair_plan(plan.tasks, set())), usage=usage + spent)


async def _stream_plan(
    objective: str, context: dict[str, Any], config: ObjectiveConfig, feed: Feed
) -> tuple[PlannerOutput | None, Usage]:
    """The plan read as it streams, each accepted task put into `feed` at once; None (with
    what the call cost) when it must be asked whole instead."""
    logger = get_run_logger()
    reader = PlanStream()
    accepted: list[PlannedTask] = []
    dropped: list[str] = []

    def take(tasks: list[PlannedTask]) -> None:
        for planned in tasks:
            outcome = accept_streamed(planned, accepted, config, {})
            if isinstance(outcome, str):
                dropped.append(outcome)
            else:
                accepted.append(outcome)
                feed.put(outcome)

    answer = await stream_structured(
        config.role_model("planner"),
        config.model_options,
        planner_prompt(objective, context, config),
        _metadata(objective, context, config),
        plan_schema(config.max_tasks),
        lambda piece: take(reader.feed(piece)),
        system=PLANNER_SYSTEM,
        answer_tokens=config.structured_tokens(),
    )
    if isinstance(answer, StreamUnsupported):
        if answer.first:
            logger.warning("planning with the whole plan: %s", answer)
        return None, Usage()
    take(reader.finish())
    rejected = reader.rejected + dropped
    for reason in rejected:
        logger.warning("streamed plan: %s", reason)
    if not accepted:
        logger.warning("the streamed plan had no valid task: asking for the whole plan")
        return None, answer.usage
    return PlannerOutput(plan=Plan(tasks=accepted), usage=answer.usage, streamed=True,
                         rejected=rejected), Usage()
