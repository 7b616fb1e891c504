"""Round 1 of an objective with its plan streamed: each planned task starts as soon as the
planner has written it and the tasks it depends on are done, while the planner writes the rest
(LLMCompiler's task-fetching unit, on the one scheduler).

The planner task hands each task it accepts into a feed (tasks/plan_objective.py); here the
first task that can run starts the round's `run-workflow` subflow, and every later one joins
it through a second feed (`add_from`, flows/run_workflow.py). A task that names no dependencies
(they are inferred from the whole plan), or waits for such a task, is held until the planner is
done, then joins with its inferred dependencies. When nothing could start before the planner
finished (a model that does not stream, a resumed run whose plan was saved), the caller runs
the plan whole, as it always did.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from prefect.states import State

from promptdag.engine.objective import ObjectiveConfig, PlannedTask, plan_to_spec
from promptdag.errors import PromptDagError
from promptdag.flows.run_workflow import AddedTask, run_workflow
from promptdag.llm.base import Usage
from promptdag.spec.dependencies import fill_missing
from promptdag.spec.models import TaskSpec
from promptdag.tasks.feeds import Feed, open_feed
from promptdag.tasks.infer_dependencies import infer_dependencies
from promptdag.tasks.plan_objective import PlannerOutput, plan_objective
from promptdag.tasks.task_options import role_task_options


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class PlannedRound:
    """Planning, and round 1 when it started while the plan streamed (`state` set)."""

    planner: PlannerOutput | None
    started_at: datetime
    finished_at: datetime
    tasks: list[PlannedTask] = field(default_factory=list)
    state: State[Any] | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


async def with_dependencies(
    tasks: list[PlannedTask], config: ObjectiveConfig, round_no: int
) -> tuple[list[PlannedTask], Usage]:
    """Fill in missing `depends_on` with the dependency analyser (heuristic if it fails)."""
    if not config.infer_dependencies or all(t.depends_on is not None for t in tasks):
        return tasks, Usage()
    inferred = await infer_dependencies.with_options(
        **role_task_options(config, f"infer dependencies (round {round_no})")
    )([(t.name, t.prompt) for t in tasks], config.role_model("planner"), config.model_options)
    return fill_missing(tasks, inferred.depends_on), inferred.usage


async def plan_and_start(
    objective: str, context: dict[str, Any], config: ObjectiveConfig, name: str, scope: str
) -> PlannedRound:
    """Plan round 1, starting its tasks as the plan streams (see module docstring).

    Raises what planning raises when no task started; once one has, a planning failure
    ends the round with the tasks written so far and is reported in `error`.
    """
    planned, adding = open_feed(), open_feed()
    started = _now()
    planning = asyncio.ensure_future(plan_objective.with_options(
        **role_task_options(config, "plan (round 1)"))(objective, context, config,
                                                        stream_to=planned.key))
    started_tasks: list[PlannedTask] = []
    held: list[PlannedTask] = []
    run: asyncio.Future[Any] | None = None
    output: PlannerOutput | None = None
    error: str | None = None
    try:
        while (task := await _next(planned, planning)) is not None:
            known = {t.name for t in started_tasks}
            if task.name in known or any(t.name == task.name for t in held):
                continue  # a retried planner writes its tasks again
            if task.depends_on is None or any(d not in known for d in task.depends_on):
                held.append(task)
            elif run is None:
                run = asyncio.ensure_future(run_workflow(
                    plan_to_spec([task], name, config, {}), resume_scope=scope,
                    add_from=adding.key, return_state=True))
                started_tasks.append(task)
            else:
                adding.put(_added(task))
                started_tasks.append(task)
        finished = _now()
        try:
            output = await planning
        except PromptDagError as exc:
            if run is None:
                raise
            error = f"planning stopped after {len(started_tasks)} task(s): {exc}"
        if run is None:  # nothing could start early: the caller runs the plan whole
            return PlannedRound(output, started, finished)
        seen = {t.name for t in [*started_tasks, *held]}
        held += [t for t in (output.plan.tasks if output else []) if t.name not in seen]
        tasks, usage = await with_dependencies([*started_tasks, *held], config, 1)
        filled = {t.name: t for t in tasks}
        for waiting in held:
            adding.put(_added(filled[waiting.name]))
        adding.close()  # the round ends once its tasks are done
        state = await run
    except BaseException:
        for pending in (planning, run):
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
        raise
    finally:
        planned.forget()
        adding.forget()
    order = [t.name for t in (output.plan.tasks if output else [])]
    tasks.sort(key=lambda t: order.index(t.name) if t.name in order else len(order))
    return PlannedRound(output, started, finished, tasks, state,
                        (output.usage if output else Usage()) + usage, error)


def _added(task: PlannedTask) -> dict[str, Any]:
    added = AddedTask(task=TaskSpec(name=task.name, prompt=task.prompt),
                      depends_on=list(task.depends_on or []))
    return added.model_dump(mode="json", exclude_unset=True)


async def _next(feed: Feed, planning: asyncio.Future[Any]) -> PlannedTask | None:
    """The next task the planner handed on; None once it is done and every task was read."""
    while not feed.ready():
        if planning.done():
            return None
        getter = asyncio.ensure_future(feed.get())
        done, _ = await asyncio.wait({getter, planning}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()  # type: ignore[no-any-return]
        getter.cancel()
    return await feed.get()  # type: ignore[no-any-return]
