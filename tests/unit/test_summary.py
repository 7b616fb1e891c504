"""The summary at the end of a run: the final tasks' answers whole, the others shortened, the
model(s) that answered, and a line when the simulated default answered because no model was
set."""

from __future__ import annotations

from datetime import datetime, timezone

from promptdag.cli._common import render_summary
from promptdag.engine.results import Summary, TaskResult, WorkflowResult
from promptdag.spec.models import parse_spec

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
LONG = "A long answer. " * 30


def result_of(*tasks: TaskResult) -> WorkflowResult:
    done = sum(t.status == "completed" for t in tasks)
    return WorkflowResult(
        name="report", status="completed", started_at=NOW, finished_at=NOW, elapsed_seconds=1.0,
        tasks=list(tasks), summary=Summary(total_tasks=len(tasks), completed_count=done,
                                           failed_count=0, skipped_count=0, success_rate=1.0))


def task(name: str, model: str, depends_on: list[str] | None = None) -> TaskResult:
    return TaskResult(name=name, status="completed", model=model, result=f"{name}: {LONG}",
                      depends_on=depends_on or [])


def test_final_answers_in_full_earlier_ones_shortened_and_every_model_named():
    result = result_of(task("Draft", "openai:gpt-4o-mini"), task("Check", "openai:gpt-4o-mini"),
                       task("Report", "anthropic:claude-haiku-4-5", ["Draft", "Check"]))
    text = render_summary(result)
    assert "models: openai:gpt-4o-mini (2 tasks), anthropic:claude-haiku-4-5 (1 task)" in text
    assert f"Report: {LONG}".rstrip() in text  # whole, under its model
    assert "Report (anthropic:claude-haiku-4-5):" in text
    assert f"Draft: {LONG}".rstrip() not in text and "Draft: A long answer." in text
    assert "no model was set" not in text  # without the spec nothing is claimed


def test_the_simulated_default_is_said_once_only_when_no_model_was_chosen():
    result = result_of(task("Only", "simulated"))
    unset = parse_spec({"name": "report", "tasks": [{"name": "Only", "prompt": "x"}]})
    chosen = parse_spec({"name": "report", "config": {"model": "simulated"},
                         "tasks": [{"name": "Only", "prompt": "x"}]})
    assert render_summary(result, unset).count("no model was set") == 1
    assert "no model was set" not in render_summary(result, chosen)
    assert "model: simulated" in render_summary(result, chosen)
