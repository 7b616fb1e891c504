"""The reflector: sees the objective, every task and result (failures too), and says whether the
objective is answered or which follow-up tasks to run next."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import task
from pydantic import BaseModel

from promptdag.engine.objective import (
    ObjectiveConfig,
    Reflection,
    check_plan,
    reflection_schema,
    repair_plan,
)
from promptdag.engine.results import TaskResult
from promptdag.llm.base import Usage
from promptdag.spec.template import fit_texts
from promptdag.tasks.prompt_cache import ROLE_CACHE
from promptdag.tasks.role_call import ask_structured

REFLECTOR_SYSTEM = (
    "You review the work done towards an objective. If the results answer it, reply complete. "
    "Otherwise list follow-up tasks (new unique names; depends_on may name earlier tasks whose "
    "results they need). Failed tasks may be retried under a new name."
)


class ReflectorOutput(BaseModel):
    reflection: Reflection
    usage: Usage


def reflector_prompt(
    objective: str, tasks: list[TaskResult], round_no: int, depth: int,
    max_chars: int | None = None,
) -> str:
    """Every task with its outcome (at most 2,000 characters each, fewer when the model's
    context leaves only `max_chars` for the prompt)."""
    head = [f"Objective: {objective}", f"Round {round_no} of at most {depth}.", "", "Tasks:"]
    tail = "\nIs the objective answered? Answer as JSON."
    texts = {
        t.name: ((t.result if t.status == "completed" else f"{t.status.upper()}: {t.error}")
                 or "")[:2000]
        for t in tasks
    }
    status = {t.name: t.status for t in tasks}

    def build(texts: Mapping[str, str]) -> str:
        lines = [f"- {name} [{status[name]}]: {text}" for name, text in texts.items()]
        return "\n".join([*head, *lines, tail])

    return fit_texts(texts, build, max_chars)


@task(name="reflect_on_results", cache_policy=ROLE_CACHE, persist_result=True)  # resume
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
        lambda room: reflector_prompt(objective, tasks, round_no, config.depth, room),
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
            check_plan(repair_plan(r.follow_up_tasks, earlier), config, earlier)
            if r.follow_up_tasks else None
        ),
        system=REFLECTOR_SYSTEM,
        schema=reflection_schema(config.max_tasks),
    )
    follow_up = repair_plan(reflection.follow_up_tasks, earlier)
    return ReflectorOutput(
        reflection=reflection.model_copy(update={"follow_up_tasks": follow_up}), usage=usage
    )
