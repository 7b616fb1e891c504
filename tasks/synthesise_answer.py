"""The synthesiser: the final answer to the objective from every result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefect import task
from pydantic import BaseModel

from promptdag.engine.objective import ObjectiveConfig
from promptdag.engine.results import TaskResult
from promptdag.llm.base import Usage
from promptdag.spec.template import fit_texts
from promptdag.tasks.prompt_cache import ROLE_CACHE
from promptdag.tasks.role_call import ask_text

SYNTHESISER_SYSTEM = (
    "Write the final answer to the objective from the results of the work done. Be complete and "
    "concrete; say what could not be found out."
)


class SynthesiserOutput(BaseModel):
    answer: str
    usage: Usage


def synthesiser_prompt(
    objective: str,
    context: dict[str, Any],
    tasks: list[TaskResult],
    max_chars: int | None = None,
) -> str:
    """Every result under its task's name; long results shortened evenly when the model's
    context leaves `max_chars` for the prompt."""
    head = [f"Objective: {objective}"]
    if context:
        head.append(f"Context (JSON): {json.dumps(context, ensure_ascii=False, default=str)}")
    head.append("Results:")
    texts = {
        t.name: (t.result or "") if t.status == "completed" else f"({t.status}: {t.error})"
        for t in tasks
    }

    def build(texts: Mapping[str, str]) -> str:
        return "\n\n".join([*head, *(f"### {name}\n{text}" for name, text in texts.items())])

    return fit_texts(texts, build, max_chars)


@task(name="synthesise_answer", cache_policy=ROLE_CACHE, persist_result=True)  # resume
async def synthesise_answer(
    objective: str, context: dict[str, Any], tasks: list[TaskResult], config: ObjectiveConfig
) -> SynthesiserOutput:
    answer, usage = await ask_text(
        config.role_model("synthesiser"),
        config.model_options,
        lambda room: synthesiser_prompt(objective, context, tasks, room),
        {"role": "synthesiser", "objective": objective},
        system=SYNTHESISER_SYSTEM,
    )
    return SynthesiserOutput(answer=answer, usage=usage)
