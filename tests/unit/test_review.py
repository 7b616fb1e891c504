"""The review's pure parts: an edited plan read (one-line errors), and the plan as shown."""

from __future__ import annotations

import json

import pytest

from promptdag.engine.estimate import estimate
from promptdag.engine.objective import ObjectiveConfig, PlannedTask, check_plan
from promptdag.engine.review import parse_tasks, plan_json, review_markdown, review_text
from promptdag.errors import SpecError
from promptdag.spec.graph import build_graph

TASKS = [PlannedTask(name="Look", prompt="Look | around", depends_on=[]),
         PlannedTask(name="Sum up", prompt="Sum up", depends_on=["Look"])]


def test_a_plan_round_trips_through_its_json() -> None:
    assert parse_tasks(plan_json(TASKS)) == TASKS
    assert parse_tasks({"tasks": json.loads(plan_json(TASKS))}) == TASKS


@pytest.mark.parametrize(("text", "message"), [
    ("[{", "the edited plan is not JSON: line 1, column 3"),
    ("[]", "must be a non-empty JSON list of tasks"),
    ('{"name": "x"}', "must be a non-empty JSON list of tasks"),
    ('[{"name": "x"}]', "the edited plan: task #1: field 'prompt': Field required"),
])
def test_an_unreadable_edit_is_one_line(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as caught:
        parse_tasks(text)
    assert "\n" not in str(caught.value)


def test_the_review_shows_tasks_dependencies_the_dag_and_the_estimate() -> None:
    spec = check_plan(TASKS, ObjectiveConfig(latency_hint_s=2), {})
    graph = build_graph(spec)
    found = estimate(spec, graph)
    text = review_markdown(TASKS, graph, found, 1, error="task 'X' depends on 'Y'")
    assert "**Not accepted: task 'X' depends on 'Y'.**" in text
    assert "| Sum up | Look | Sum up |" in text and "Look \\| around" in text
    assert "```mermaid" in text and "estimated time: 4.0 s at breadth 3" in text
    assert "promptdag approve RUN" in text
    terminal = review_text(TASKS, graph, found, 2)
    assert terminal.startswith("Plan for round 2 (2 tasks; estimated time: 4.0 s")
    assert "    - Sum up (after Look)" in terminal


def test_the_objective_report_compares_each_round_with_its_estimate() -> None:
    from promptdag.engine.objective import ObjectiveResult, Plan, RoundResult
    from promptdag.engine.report import objective_report
    from promptdag.engine.results import WorkflowResult

    spec = check_plan(TASKS, ObjectiveConfig(latency_hint_s=2), {})
    outcome = WorkflowResult.model_validate({
        "name": "r", "status": "completed", "elapsed_seconds": 4.5, "tasks": [],
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:04+00:00",
        "summary": {"total_tasks": 0, "completed_count": 0, "failed_count": 0,
                    "skipped_count": 0, "success_rate": 1.0}})
    result = ObjectiveResult(objective="o", status="completed", stop_reason="complete", rounds=[
        RoundResult(round=1, plan=Plan(tasks=TASKS), result=outcome, edited=True,
                    estimate=estimate(spec, build_graph(spec)))])
    text = objective_report(result)
    assert "in 4.5 s (estimated time: 4.0 s at breadth 3 (sequential 4.0 s" in text
    assert "; plan edited at review" in text
