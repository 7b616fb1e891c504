"""Specs without dependencies: the model infers them, or the heuristic when the model fails."""

from __future__ import annotations

from promptdag.api import arun

TASKS = [
    {"name": "Research Paris", "prompt": "Research Paris"},
    {"name": "Research Rome", "prompt": "Research Rome"},
    {"name": "Write report", "prompt": "Write a report comparing the cities"},
]


def spec(**model_options) -> dict:
    return {"name": "cities", "tasks": TASKS,
            "config": {"infer_dependencies": True, "model_options": model_options}}


async def test_the_model_infers_which_tasks_are_independent():
    result = await arun(spec())
    assert [t.depends_on for t in result.tasks] == [[], [], ["Research Paris", "Research Rome"]]
    assert result.status == "completed"


async def test_the_heuristic_decides_when_the_model_fails():
    result = await arun(spec(fail_roles=["dependency_analyzer"]))
    # No task names another, so the safe sequential order is kept.
    assert [t.depends_on for t in result.tasks] == [[], ["Research Paris"], ["Research Rome"]]
    assert result.status == "completed"
