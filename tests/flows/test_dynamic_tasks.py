"""Tasks added to a running workflow: the one scheduler accepts them while it runs (from a
producer beside the loop) and runs them under the same breadth, dependencies and results."""

from __future__ import annotations

import asyncio

from prefect import flow

from promptdag.engine.results import TaskResult
from promptdag.flows.scheduler import ReadySetScheduler
from promptdag.spec.models import TaskSpec, parse_spec
from promptdag.spec.validation import validate_spec


def spec(breadth: int = 2):
    return parse_spec({
        "name": "dynamic",
        "config": {"breadth": breadth, "retry_backoff_seconds": 0},
        "tasks": [{"name": "First", "prompt": "begin", "model": "probe:x",
                   "model_options": {"latency_s": 0.05}}],
    })


@flow(name="dynamic-tasks-test")
async def run_with_producer(breadth: int) -> list[TaskResult]:
    workflow = spec(breadth)
    scheduler = ReadySetScheduler(workflow, validate_spec(workflow))
    release = scheduler.hold()

    async def produce() -> None:
        try:
            await asyncio.sleep(0)  # the loop is running: First has started
            for i in range(4):
                scheduler.add_task(TaskSpec(name=f"Part {i}", prompt=f"part {i} of {{{{ First }}}}",
                                            model="probe:x", model_options={"latency_s": 1.0}),
                                   ["First"])
                await asyncio.sleep(0.01)  # as the lines of a streamed plan arrive
            scheduler.add_task(TaskSpec(name="Join", prompt="join", model="probe:x"),
                               [f"Part {i}" for i in range(4)])
        finally:
            release()

    results, _ = await asyncio.gather(scheduler.run(), produce())
    return results


async def test_tasks_added_while_running_run_under_breadth_after_their_dependencies(probe):
    results = await run_with_producer(2)
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["First", *[f"Part {i}" for i in range(4)], "Join"]
    assert all(r.status == "completed" for r in results)
    assert "probe answer for First" in (by_name["Part 0"].prompt or "")
    calls = {c.task: c for c in probe.calls}
    assert all(calls[f"Part {i}"].start >= calls["First"].end for i in range(4))
    assert calls["Join"].start >= max(calls[f"Part {i}"].end for i in range(4))
    assert probe.max_overlap() == 2
    assert set(by_name["Join"].depends_on) == {f"Part {i}" for i in range(4)}
