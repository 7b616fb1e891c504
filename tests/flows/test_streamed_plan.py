"""Streamed planning on real Prefect: round 1's tasks start while the planner is still writing,
a malformed line costs only its own task, and the whole-plan path stays for review mode and
models that cannot stream."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

from promptdag.api import arun_objective
from promptdag.llm.base import Completion, CompletionRequest, TextSink
from promptdag.llm.registry import register_provider
from promptdag.llm.simulated import SimulatedModel

FAST = {"retry_backoff_seconds": 0}


class GatedPlanner:
    """`gated:x`: the simulated model, except that its streamed plan stops after the first
    task's closing brace until some task's call has arrived (or 60 s have passed): the
    rest of the plan cannot be written before a task started unless dispatch waits for it."""

    events: ClassVar[list[str]] = []
    task_called = threading.Event()

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = f"gated:{name}"
        self.model = SimulatedModel("", options)

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.metadata.get("role") == "task":
            self.events.append(f"task {request.task_name}")
            self.task_called.set()
        return await self.model.complete(request)

    async def stream(self, request: CompletionRequest, on_text: TextSink) -> Completion:
        completion = await self.model.complete(request)
        first_task_end = completion.text.index("}") + 1
        on_text(completion.text[:first_task_end])
        self.events.append("first task written")
        for _ in range(2400):  # up to 240 s: a wait for the first task's call, not a measure
            if self.task_called.is_set():
                break
            await asyncio.sleep(0.1)
        on_text(completion.text[first_task_end:])
        self.events.append("plan finished")
        return completion


register_provider("gated", GatedPlanner)


async def test_round_one_starts_its_first_task_before_the_plan_is_finished():
    GatedPlanner.events.clear()
    GatedPlanner.task_called.clear()
    result = await arun_objective("Assess solar power for a small town",
                                  config={**FAST, "model": "gated:x", "breadth": 4})

    assert result.status == "completed" and result.plan_streamed
    events = GatedPlanner.events
    assert events.index("first task written") < events.index("task Background") < events.index(
        "plan finished")
    assert result.first_task_started_at and result.planning_finished_at
    assert result.planning_started_at < result.first_task_started_at < result.planning_finished_at
    tasks = result.rounds[0].result.tasks  # type: ignore[union-attr]
    assert [t.name for t in tasks] == ["Background", "Key developments", "Open challenges",
                                       "Synthesize findings"]
    assert all(t.status == "completed" for t in tasks)
    assert tasks[-1].depends_on == ["Background", "Key developments", "Open challenges"]
    assert result.final_answer


async def test_an_invalid_task_in_the_stream_is_dropped_and_the_others_run():
    result = await arun_objective("Plan a trip", config={**FAST, "model_options":
                                                         {"invalid_plans": 1}})
    assert result.status == "completed" and result.plan_streamed
    assert len(result.plan_rejected) == 1 and "'Background'" in result.plan_rejected[0]
    tasks = result.rounds[0].result.tasks  # type: ignore[union-attr]
    assert [t.name for t in tasks] == ["Key developments", "Open challenges",
                                       "Synthesize findings"]
    assert tasks[-1].depends_on == ["Key developments", "Open challenges"]  # the dropped one gone


async def test_without_streaming_the_tasks_wait_for_the_whole_plan():
    result = await arun_objective("Assess solar power for a small town",
                                  config={**FAST, "stream_plan": False})
    assert result.status == "completed" and not result.plan_streamed
    assert result.planning_finished_at and result.first_task_started_at
    assert result.planning_finished_at < result.first_task_started_at
    assert len(result.rounds[0].plan.tasks) == 4

