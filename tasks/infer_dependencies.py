"""Dependency analysis (seed 002): which tasks need which results, when a plan or a spec does
not say. LLM first (conservative: when unsure, depend); the heuristic when the LLM fails."""

from __future__ import annotations

from typing import Any, Literal

from prefect import task
from pydantic import BaseModel

from promptdag.errors import ProviderError
from promptdag.llm.base import Usage
from promptdag.spec.dependencies import DependencyAnalysis, heuristic_dependencies
from promptdag.tasks.prompt_cache import ROLE_CACHE
from promptdag.tasks.role_call import ask_structured

ANALYZER_SYSTEM = (
    "You decide which tasks depend on which. A task depends on an earlier task when it needs "
    "that task's result. Independent tasks run in parallel, so only list real needs; but when "
    "unsure, depend (a missing dependency gives a wrong answer, an extra one only costs time). "
    "Only earlier tasks may be listed."
)


class InferredDependencies(BaseModel):
    depends_on: dict[str, list[str]]
    method: Literal["llm", "heuristic"]
    usage: Usage
    note: str | None = None


def _check(tasks: list[tuple[str, str]]) -> Any:
    order = {name: i for i, (name, _) in enumerate(tasks)}

    def check(analysis: DependencyAnalysis) -> None:
        names = [t.name for t in analysis.tasks]
        if sorted(names) != sorted(order):
            raise ValueError(f"answer must list exactly these tasks: {list(order)}")
        for item in analysis.tasks:
            for dep in item.depends_on:
                if dep not in order or order[dep] >= order[item.name]:
                    raise ValueError(
                        f"task {item.name!r} may only depend on earlier tasks, not {dep!r}"
                    )

    return check


def _answer_tokens(options: dict[str, Any], count: int) -> int | None:
    """With a `max_tokens` option, room for `count` short entries, so a low limit keeps the
    analysis short too; None (the roles' default floor) without one."""
    limit = options.get("max_tokens")
    return max(int(limit), 48 + 32 * count) if isinstance(limit, int) else None


@task(name="infer_dependencies", cache_policy=ROLE_CACHE, persist_result=True)  # resume
async def infer_dependencies(
    tasks: list[tuple[str, str]], model: str, options: dict[str, Any]
) -> InferredDependencies:
    """(name, prompt) pairs in order -> each task's dependencies among the earlier ones."""
    prompt = "Tasks, in order:\n" + "\n".join(
        f"{i + 1}. {name}: {text}" for i, (name, text) in enumerate(tasks)
    )
    try:
        analysis, usage = await ask_structured(
            model,
            options,
            prompt,
            {"role": "dependency_analyzer", "tasks": [{"name": n, "prompt": p} for n, p in tasks]},
            DependencyAnalysis,
            check=_check(tasks),
            system=ANALYZER_SYSTEM,
            answer_tokens=_answer_tokens(options, len(tasks)),
        )
    except ProviderError as exc:
        return InferredDependencies(
            depends_on=heuristic_dependencies(tasks),
            method="heuristic",
            usage=exc.usage or Usage(),  # the failed calls were made: they count
            note=f"LLM analysis failed: {exc}",
        )
    return InferredDependencies(
        depends_on={t.name: t.depends_on for t in analysis.tasks}, method="llm", usage=usage
    )
