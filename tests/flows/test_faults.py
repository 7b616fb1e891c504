"""Fault injection: flaky models, hanging models and an overall workflow timeout."""

from __future__ import annotations

from promptdag.api import arun


async def test_a_flaky_model_completes_a_100_task_workflow_within_the_retry_budget():
    budget = 8
    tasks = [{"name": f"t{i}", "prompt": f"part {i}", "depends_on": [] if i < 10 else
              [f"t{i - 10}"]} for i in range(100)]
    result = await arun({"name": "flaky", "tasks": tasks, "config": {
        "breadth": 10, "max_retries": budget, "retry_backoff_seconds": 0,
        "model_options": {"failure_rate": 0.3, "seed": 11}}})
    assert result.status == "completed" and result.summary.completed_count == 100
    attempts = [t.attempts for t in result.tasks]
    assert max(attempts) <= budget + 1
    assert sum(a > 1 for a in attempts) >= 10  # the faults really happened


async def test_a_hanging_model_is_stopped_at_its_timeout_and_retried(probe):
    result = await arun({"name": "hang", "config": {"retry_backoff_seconds": 0}, "tasks": [
        {"name": "Hang", "prompt": "x", "model": "probe:x", "model_options": {"latency_s": 60},
         "timeout_seconds": 1.0, "max_retries": 1}]})
    task = result.task("Hang")
    assert (task.status, task.attempts, len(probe.calls)) == ("failed", 2, 2)
    for call in probe.calls:  # each attempt was interrupted at its timeout, not after 60 s
        assert call.end - call.start < 30  # (a busy machine's event loop may be seconds late)


async def test_the_workflow_timeout_cancels_what_has_not_finished_and_keeps_the_rest(probe):
    def spec(limit: float | None) -> dict:
        return {"name": "bounded", "config": {"breadth": 2, "workflow_timeout_seconds": limit},
                "tasks": [
                    {"name": "quick", "prompt": "q", "model": "probe:x", "depends_on": []},
                    {"name": "slow", "prompt": "s", "model": "probe:x", "depends_on": [],
                     "model_options": {"latency_s": 0.6 if limit is None else 60}},
                    {"name": "after quick", "prompt": "a", "model": "probe:x",
                     "depends_on": ["quick", "slow"]},
                ]}

    result = await arun(spec(3))
    status = {t.name: t.status for t in result.tasks}
    assert status == {"quick": "completed", "slow": "cancelled", "after quick": "cancelled"}
    assert result.task("after quick").error == "cancelled: the workflow timed out after 3 s"
    assert result.status == "failed"
    probe.calls.clear()
    resumed = await arun(spec(None))
    assert resumed.task("quick").reused and resumed.status == "completed"
    assert sorted(c.task for c in probe.calls) == ["after quick", "slow"]
