"""The planner: an objective in, a validated `Plan` (a DAG of prompt tasks) out."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from pydantic import BaseModel

from promptdag.engine.objective import ObjectiveConfig, Plan, check_plan, plan_schema, repair_plan
from promptdag.llm.base import Usage
from promptdag.tasks.prompt_cache import ROLE_CACHE
from promptdag.tasks.role_call import ask_structured

PLANNER_SYSTEM = (
    "You plan work for a team of LLM workers. Break the objective into small, self-contained "
    "tasks. Tasks run in parallel unless one needs another's result: list those names in "
    "depends_on (use [] when a task needs nothing). Prefer wide plans over long chains, and end "
    "with one task that synthesises the results. Each task's prompt must stand on its own; the "
    "results of its dependencies are appended to it automatically."
)


class PlannerOutput(BaseModel):
    plan: Plan
    usage: Usage


def planner_prompt(objective: str, context: dict[str, Any], config: ObjectiveConfig) -> str:
    return (
        f"Objective: {objective}\n"
        f"Context (JSON): {json.dumps(context, ensure_ascii=False, default=str)}\n"
        f"Use at most {config.max_tasks} tasks; up to {config.breadth} run at the same time.\n"
        "Answer with the plan as JSON."
    )


@task(name="plan_objective", cache_policy=ROLE_CACHE, persist_result=True)  # resume
async def plan_objective(
    objective: str, context: dict[str, Any], config: ObjectiveConfig
) -> PlannerOutput:
    """Ask the planner model for a plan; an invalid plan is sent back once with its error."""
    plan, usage = await ask_structured(
        config.role_model("planner"),
        config.model_options,
        planner_prompt(objective, context, config),
        {
            "role": "planner",
            "objective": objective,
            "context": context,
            "max_tasks": config.max_tasks,
            "breadth": config.breadth,
        },
        Plan,
        check=lambda p: check_plan(repair_plan(p.tasks, set()), config, {}),
        system=PLANNER_SYSTEM,
        schema=plan_schema(config.max_tasks),
    )
    return PlannerOutput(plan=Plan(tasks=repair_plan(plan.tasks, set())), usage=usage)
