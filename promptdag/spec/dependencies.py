"""Dependency inference for tasks that come without `depends_on` (seed 002).

An LLM analyses the tasks (conservative: when unsure, depend); when it fails, this module's
heuristic decides: a task depends on the earlier tasks its prompt names; a task that names none
depends on the task before it (sequential order is always safe).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T", bound=BaseModel)


class TaskDependencies(BaseModel):
    name: str
    depends_on: list[str] = Field(default_factory=list)


class DependencyAnalysis(BaseModel):
    """The analyser's answer: for each task, the earlier tasks whose results it needs."""

    tasks: list[TaskDependencies] = Field(..., description="Every task, in the given order.")


SYNTHESIS_WORDS = re.compile(
    r"\b(synthes\w*|summar\w*|report|combine\w*|compar\w*|conclu\w*|final|overall|integrat\w*)\b",
    re.IGNORECASE,
)


def mentions(prompt: str, name: str) -> bool:
    """Whether a prompt names a task (whole words, any case)."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", prompt, re.IGNORECASE) is not None


def heuristic_dependencies(tasks: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(name, prompt) pairs in order -> depends_on per task: named earlier tasks, else the
    previous task."""
    inferred: dict[str, list[str]] = {}
    for i, (name, prompt) in enumerate(tasks):
        named = [other for other, _ in tasks[:i] if mentions(prompt, other)]
        inferred[name] = named or ([tasks[i - 1][0]] if i else [])
    return inferred


def keyword_dependencies(tasks: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The simulated analyser's answer: research-like tasks are independent; a synthesis-like
    task (synthesise, summarise, report, compare...) needs every earlier task."""
    inferred: dict[str, list[str]] = {}
    for i, (name, prompt) in enumerate(tasks):
        named = [other for other, _ in tasks[:i] if mentions(prompt, other)]
        if SYNTHESIS_WORDS.search(f"{name} {prompt}"):
            named = [other for other, _ in tasks[:i]]
        inferred[name] = named
    return inferred


def fill_missing(tasks: list[T], depends_on: Mapping[str, list[str]]) -> list[T]:
    """Tasks (spec tasks or planned ones) with `depends_on` filled in where they had none;
    dependencies a task states itself are kept as written."""
    filled = []
    for task in tasks:
        fields: Any = task  # a TaskSpec or a PlannedTask: both have name and depends_on
        if fields.depends_on is None:
            task = task.model_copy(update={"depends_on": list(depends_on.get(fields.name, []))})
        filled.append(task)
    return filled
