"""The synthesiser: the final answer to the objective from every result."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from promptdag.llm.base import Usage
from promptdag.objective import ObjectiveConfig
from promptdag.results import TaskResult
from tasks.role_call import ask_text

SYNTHESISER_SYSTEM = (
    "Write the final answer to the objective from the results of the work done. Be complete and "
    "concrete; say what could not be found out."
)


class SynthesiserOutput(BaseModel):
    answer: str
    usage: Usage


def synthesiser_prompt(objective: str, context: dict[str, Any], tasks: list[TaskResult]) -> str:
    parts = [f"Objective: {objective}"]
    if context:
        parts.append(f"Context (JSON): {json.dumps(context, ensure_ascii=False, default=str)}")
    parts.append("Results:")
    for t in tasks:
        if t.status == "completed":
            parts.append(f"### {t.name}\n{t.result}")
        else:
            parts.append(f"### {t.name}\n({t.status}: {t.error})")
    return "\n\n".join(parts)


@task(name="synthesise_answer", cache_policy=NO_CACHE, persist_result=False)
async def synthesise_answer(
    objective: str, context: dict[str, Any], tasks: list[TaskResult], config: ObjectiveConfig
) -> SynthesiserOutput:
    answer, usage = await ask_text(
        config.role_model("synthesiser"),
        config.model_options,
        synthesiser_prompt(objective, context, tasks),
        {"role": "synthesiser", "objective": objective},
        system=SYNTHESISER_SYSTEM,
    )
    return SynthesiserOutput(answer=answer, usage=usage)
