"""What the report, task table, DAG and progress artifacts say (pure rendering, no server)."""

from __future__ import annotations

from datetime import datetime, timezone

from promptdag.engine.objective import ObjectiveResult, Plan, PlannedTask, Reflection, RoundResult
from promptdag.engine.report import (
    MERMAID_LIMIT,
    final_tasks,
    mermaid_markdown,
    objective_report,
    objective_task_rows,
    progress_line,
    task_rows,
    workflow_report,
)
from promptdag.engine.results import TaskResult, WorkflowResult, summarise
from promptdag.flows.artifacts import slug
from promptdag.llm.base import Usage

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def workflow() -> WorkflowResult:
    tasks = [
        TaskResult(name="Gather", status="completed", attempts=2, duration_seconds=1.23456,
                   result="facts", usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.01)),
        TaskResult(name="Check", status="failed", depends_on=["Gather"], attempts=4,
                   error="rate limited " * 50),
        TaskResult(name="Write", status="skipped", depends_on=["Check"],
                   error="skipped: upstream task 'Check' failed"),
        TaskResult(name="Aside", status="completed", depends_on=["Gather"], result="x" * 9000),
    ]
    return WorkflowResult(name="Report Test", status="failed", started_at=NOW, finished_at=NOW,
                          elapsed_seconds=2.5, tasks=tasks, summary=summarise(tasks),
                          usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.01))


def test_the_workflow_report_leads_with_outcome_then_answers_then_failures():
    text = workflow_report(workflow())
    assert text.startswith("# Report Test: failed\n")
    assert "**2 of 4 tasks completed** (1 failed, 1 skipped, 0 cancelled) in 2.50 s" in text
    assert [t.name for t in final_tasks(workflow())] == ["Write", "Aside"]
    assert "### Aside" in text and "### Gather" not in text  # answers are the final tasks
    assert "x" * 3990 in text and "x" * 4001 not in text  # long results are clipped
    assert "- **Check** (failed): rate limited" in text and "- **Write** (skipped)" in text


def test_task_rows_carry_status_attempts_duration_tokens_and_cost():
    rows = task_rows(workflow().tasks)
    assert rows[0] == {
        "task": "Gather", "status": "completed", "reused": False, "attempts": 2,
        "duration_s": 1.235, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01,
        "saved_tokens": 0, "saved_usd": 0.0, "model": None, "depends_on": "", "error": None,
    }
    assert rows[1]["depends_on"] == "Gather" and len(rows[1]["error"]) <= 200


def test_the_objective_report_gives_the_answer_and_each_round():
    result = ObjectiveResult(
        objective="Assess tides", status="completed", stop_reason="complete",
        final_answer="Tides are predictable.", elapsed_seconds=3.0,
        rounds=[RoundResult(round=1, plan=Plan(tasks=[PlannedTask(name="Gather", prompt="p")]),
                            result=workflow(),
                            reflection=Reflection(complete=True, critique="Good enough."))],
    )
    text = objective_report(result)
    assert text.startswith("# Assess tides\n") and "## Answer\n\nTides are predictable." in text
    assert "1. 1 tasks planned, 2 completed; reflection: complete. Good enough." in text
    assert [row["round"] for row in objective_task_rows(result)] == [1, 1, 1, 1]


def test_big_dags_are_not_drawn_and_progress_reads_plainly():
    assert mermaid_markdown("graph TD", 3) == "```mermaid\ngraph TD\n```\n"
    assert "too many to draw" in mermaid_markdown("graph TD", MERMAID_LIMIT + 1)
    assert progress_line(3, 8) == "3 of 8 tasks finished"
    assert progress_line(3, 8, 2, 5) == "3 of 8 tasks finished (round 2 of at most 5)"


def test_artifact_keys_follow_prefects_rule():
    assert slug("AI Healthcare Research") == "ai-healthcare-research"
    assert slug("  ??? ") == "run"
    assert slug("x" * 100) == "x" * 60
    assert slug("Daily Briefing (round 2)") == "daily-briefing-round-2"
