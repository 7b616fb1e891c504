"""The run-workflow flow on real Prefect: results, retries, timeouts, failure modes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from promptdag import WorkflowBuilder, arun_workflow, parse_spec
from promptdag.api import arun

EXAMPLES = Path(__file__).parents[2] / "examples"
FAST = {"retry_backoff_seconds": 0}


def workflow(*tasks: dict, **config) -> dict:
    return {"name": "test", "config": {**FAST, **config}, "tasks": list(tasks)}


def t(name: str, prompt: str | None = None, **fields) -> dict:
    return {"name": name, "prompt": prompt or f"Do {name}", **fields}


async def test_the_seed_api_request_body_runs_as_it_is():
    result = await arun(EXAMPLES / "seed_api_request.json")
    assert result.status == "completed"
    assert result.summary.completed_count == 4 and result.summary.success_rate == 1.0
    synth = result.task("Synthesize")
    assert synth.depends_on == ["Research Diagnostics", "Research Treatment"]
    # Both upstream results reached the downstream prompt.
    for name in ("Research Diagnostics", "Research Treatment"):
        assert result.task(name).result in (synth.prompt or "")
    assert result.usage.input_tokens == sum(t.usage.input_tokens for t in result.tasks)
    assert all(t.started_at and t.started_at.tzinfo for t in result.tasks)


async def test_references_insert_upstream_results_into_the_prompt():
    result = await arun(
        workflow(
            t("Facts", depends_on=[]),
            t(
                "Essay",
                "Write on {{ topic }} from: {{ Facts }}",
                depends_on=[],
                context={"topic": "bees"},
            ),
        )
    )
    facts, essay = result.task("Facts"), result.task("Essay")
    assert essay.depends_on == ["Facts"]
    assert essay.prompt == f"Write on bees from: {facts.result}"


async def test_flow_run_and_task_runs_are_named_after_the_workflow():
    result = await arun(workflow(t("Alpha"), t("Beta")))
    async with get_client() as client:
        run = await client.read_flow_run(UUID(result.flow_run_id))
        assert run.name == "test"
        for _ in range(2400):  # task runs reach the API through events: up to 240 s (the
            # server's recorder retries a flush SQLite refused a minute later)
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                limit=50,
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            )
            if len(task_runs) == 2 and all(r.name in ("Alpha", "Beta") for r in task_runs):
                break
            await asyncio.sleep(0.1)
    assert sorted(r.name for r in task_runs) == ["Alpha", "Beta"]
    assert "workflow:test" in run.tags  # on the flow run: task-run tags cost a slot lookup each


async def test_retries_until_the_model_answers():
    result = await arun(workflow(t("Flaky", model_options={"fail_first": 2}), max_retries=3))
    assert result.status == "completed"
    assert result.task("Flaky").attempts == 3


async def test_retry_budget_is_never_exceeded():
    result = await arun(workflow(t("Broken", model_options={"fail_first": 10}), max_retries=2))
    task = result.task("Broken")
    assert (result.status, task.status, task.attempts) == ("failed", "failed", 3)
    assert "simulated transient failure" in (task.error or "")


async def test_no_retries_when_retry_is_disabled():
    result = await arun(workflow(t("Broken", model_options={"fail_first": 1}), enable_retry=False))
    assert result.task("Broken").attempts == 1


async def test_permanent_errors_are_not_retried(probe):
    result = await arun(
        workflow(t("Bad", model="probe:x", model_options={"permanent": True}), max_retries=3)
    )
    assert result.task("Bad").attempts == 1 and len(probe.calls) == 1
    assert "permanent failure" in (result.task("Bad").error or "")


async def test_a_hanging_model_is_stopped_by_the_timeout_and_retried():
    result = await arun(
        workflow(t("Hang", model_options={"latency_s": 30}, timeout_seconds=0.3, max_retries=1))
    )
    task = result.task("Hang")
    assert task.status == "failed" and task.attempts == 2
    assert task.error == "timed out after 0.3 s"
    assert (task.duration_seconds or 99) < 20  # two 0.3 s attempts, not 30 s


async def test_fail_fast_cancels_what_has_not_started():
    result = await arun(
        workflow(
            t("Bad", model_options={"fail_first": 9}, depends_on=[]),
            t("Later", depends_on=["Bad"]),
            t("Other", depends_on=[], model_options={"latency_s": 0.2}),
            t("AfterOther", depends_on=["Other"]),
            max_retries=0,
            failure_mode="fail_fast",
            breadth=2,
        )
    )
    status = {t.name: t.status for t in result.tasks}
    assert status["Bad"] == "failed" and status["Later"] == "cancelled"
    assert status["Other"] == "completed"  # already running: allowed to finish
    assert status["AfterOther"] == "cancelled"
    assert result.status == "failed"


async def test_skip_dependents_runs_every_other_branch():
    result = await arun(
        workflow(
            t("Bad", model_options={"fail_first": 9}, depends_on=[]),
            t("Child", depends_on=["Bad"]),
            t("Grandchild", depends_on=["Child"]),
            t("Other", depends_on=[]),
            t("AfterOther", depends_on=["Other"]),
            max_retries=0,
            failure_mode="skip_dependents",
        )
    )
    status = {t.name: t.status for t in result.tasks}
    assert status == {
        "Bad": "failed",
        "Child": "skipped",
        "Grandchild": "skipped",
        "Other": "completed",
        "AfterOther": "completed",
    }
    assert result.task("Grandchild").error == "skipped: upstream task 'Bad' failed"
    assert result.summary.skipped_count == 2


async def test_continue_gives_dependents_the_failure_text():
    result = await arun(
        workflow(
            t("Bad", model_options={"fail_first": 9}, depends_on=[]),
            t("Child", "Handle {{ Bad }}", depends_on=[]),
            max_retries=0,
            failure_mode="continue",
        )
    )
    assert result.task("Child").status == "completed"
    assert "[task 'Bad' failed: simulated transient failure" in (result.task("Child").prompt or "")
    assert result.status == "failed"


async def test_collect_intermediate_false_keeps_only_final_results():
    result = await arun(workflow(t("A"), t("B"), collect_intermediate=False))
    assert result.task("A").result is None and result.task("A").prompt is None
    assert result.task("B").result


async def test_the_builder_and_the_python_call_run_the_same_engine():
    spec = (
        WorkflowBuilder("built")
        .with_config(**FAST)
        .add_task("init", "Initialise")
        .add_parallel_tasks(
            [{"name": "a", "prompt": "A"}, {"name": "b", "prompt": "B"}], depends_on=["init"]
        )
        .add_task("done", "Synthesise", depends_on=["a", "b"])
        .build()
    )
    result = await arun_workflow(spec)
    assert result.status == "completed" and [t.name for t in result.tasks] == [
        "init",
        "a",
        "b",
        "done",
    ]


def test_the_sync_call_works_outside_an_event_loop():
    from promptdag import run_workflow

    result = run_workflow(parse_spec(workflow(t("only"))))
    assert result.status == "completed"


@pytest.mark.parametrize("mode", ["fail_fast", "skip_dependents", "continue"])
async def test_a_failed_workflow_still_returns_its_result(mode):
    result = await arun(
        workflow(t("Bad", model_options={"fail_first": 9}), max_retries=0, failure_mode=mode)
    )
    assert result.status == "failed" and result.summary.failed_count == 1


async def test_a_spec_over_prefects_parameter_limit_runs_by_reference():
    # Prefect refuses flow-run parameters over 512 KB: such specs travel as a stored file.
    long = "Consider this carefully. " * 80
    tasks = [t(f"part {i}", f"{long} ({i})", depends_on=[]) for i in range(300)]
    result = await arun(workflow(*tasks, breadth=16))
    assert result.status == "completed" and result.summary.completed_count == 300
    async with get_client() as client:
        run = await client.read_flow_run(UUID(result.flow_run_id))
    assert isinstance(run.parameters["spec"], str) and run.parameters["spec"].endswith(".json")
