"""Conditional branches, structured results and sub-workflows on real Prefect."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client

from promptdag.api import arun

EXAMPLES = Path(__file__).parents[2] / "examples"
LABEL = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["simple", "complex"]},
        "score": {"type": "number"},
    },
    "required": ["label", "score"],
}


def branching(label: str) -> dict:
    return {
        "name": "branching",
        "config": {"model_options": {"outputs": {"Assess": {"label": label, "score": 0.9}}}},
        "tasks": [
            {"name": "Assess", "prompt": "Classify", "output_schema": LABEL},
            {
                "name": "Simple path",
                "prompt": "Answer simply ({{ Assess.score }})",
                "when": "{{ Assess.label }} == 'simple'",
            },
            {
                "name": "Complex path",
                "prompt": "Research deeply",
                "when": "{{ Assess.label }} == 'complex' and {{ Assess.score }} > 0.5",
            },
            {"name": "After simple", "prompt": "Polish", "depends_on": ["Simple path"]},
            {
                "name": "Join",
                "prompt": "Final answer",
                "depends_on": ["Simple path", "Complex path"],
            },
        ],
    }


async def test_the_branch_whose_condition_holds_runs_and_the_other_is_skipped():
    result = await arun(branching("complex"))
    status = {t.name: t.status for t in result.tasks}
    assert status == {
        "Assess": "completed",
        "Simple path": "skipped",
        "Complex path": "completed",
        "After simple": "skipped",
        "Join": "completed",
    }
    assert result.task("Assess").output == {"label": "complex", "score": 0.9}
    assert result.task("Simple path").error == (
        "skipped: condition not met: {{ Assess.label }} == 'simple'"
    )
    assert result.task("After simple").error == "skipped: every dependency was skipped"
    assert result.status == "completed"  # a branch not taken is not a failure


async def test_fields_of_structured_results_fill_prompts():
    result = await arun(branching("simple"))
    assert result.task("Simple path").prompt == "Answer simply (0.9)"
    assert result.task("Complex path").status == "skipped"


async def test_the_adaptive_example_takes_its_deep_branch_as_a_subflow():
    result = await arun(EXAMPLES / "adaptive_research.yaml")
    deep = result.task("Deep research")
    assert result.status == "completed" and deep.status == "completed"
    assert deep.workflow is not None and deep.workflow.summary.completed_count == 4
    assert deep.result == deep.workflow.task("Synthesis").result
    async with get_client() as client:
        child = await client.read_flow_run(UUID(deep.workflow.flow_run_id))
        assert child.parent_task_run_id is not None  # shown under its parent in the UI
        link = await client.read_task_run(child.parent_task_run_id)
        assert str(link.flow_run_id) == result.flow_run_id


async def test_workflows_nest_two_levels_deep_and_count_as_one_slot():
    inner = {
        "name": "inner",
        "config": {"breadth": 2},
        "tasks": [{"name": f"i{k}", "prompt": f"inner {k}", "depends_on": []} for k in range(3)],
    }
    middle = {
        "name": "middle",
        "tasks": [{"name": "m", "prompt": "start"}, {"name": "nested", "workflow": inner}],
    }
    outer = {
        "name": "outer",
        "config": {"breadth": 1},
        "tasks": [
            {"name": "before", "prompt": "go"},
            {"name": "sub", "workflow": middle},
            {"name": "after", "prompt": "finish"},
        ],
    }
    result = await arun(outer)
    assert result.status == "completed"
    middle_result = result.task("sub").workflow
    assert middle_result is not None
    inner_result = middle_result.task("nested").workflow
    assert inner_result is not None and inner_result.summary.completed_count == 3
    # The parent's inputs reached the sub-workflow's first task.
    assert result.task("before").result in (middle_result.task("m").prompt or "")
    # breadth 1 in the parent: 'after' started only when the whole sub-workflow had finished.
    assert result.task("after").started_at >= result.task("sub").finished_at  # type: ignore
