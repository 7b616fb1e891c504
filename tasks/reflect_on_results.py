"""The reflector: sees the objective, every task and result (failures too), and says whether the
objective is answered or which follow-up tasks to run next."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from promptdag.llm.base import Usage
from promptdag.objective import ObjectiveConfig, Reflection, check_plan
from promptdag.results import TaskResult
from tasks.role_call import ask_structured

REFLECTOR_SYSTEM = (
    "You review the work done towards an objective. If the results answer it, reply complete. "
    "Otherwise list follow-up tasks (new unique names; depends_on may name earlier tasks whose "
    "results they need). Failed tasks may be retried under a new name."
)


class ReflectorOutput(BaseModel):
    reflection: Reflection
    usage: Usage


def reflector_prompt(objective: str, tasks: list[TaskResult], round_no: int, depth: int) -> str:
    lines = [f"Objective: {objective}", f"Round {round_no} of at most {depth}.", "", "Tasks:"]
    for t in tasks:
        outcome = t.result if t.status == "completed" else f"{t.status.upper()}: {t.error}"
        lines.append(f"- {t.name} [{t.status}]: {(outcome or '')[:2000]}")
    lines.append("\nIs the objective answered? Answer as JSON.")
    return "\n".join(lines)


@task(name="reflect_on_results", cache_policy=NO_CACHE, persist_result=False)
async def reflect_on_results(
    objective: str,
    tasks: list[TaskResult],
    earlier: dict[str, str],
    round_no: int,
    config: ObjectiveConfig,
) -> ReflectorOutput:
    """Ask the reflector model; follow-up tasks are validated like a plan (one repair)."""
    reflection, usage = await ask_structured(
        config.role_model("reflector"),
        config.model_options,
        reflector_prompt(objective, tasks, round_no, config.depth),
        {
            "role": "reflector",
            "objective": objective,
            "round": round_no,
            "task_names": [t.name for t in tasks],
            "failed": [t.name for t in tasks if t.status == "failed"],
            "completed_count": sum(t.status == "completed" for t in tasks),
        },
        Reflection,
        check=lambda r: (
            check_plan(r.follow_up_tasks, config, earlier) if r.follow_up_tasks else None
        ),
        system=REFLECTOR_SYSTEM,
    )
    return ReflectorOutput(reflection=reflection, usage=usage)
