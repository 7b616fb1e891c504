"""A batch run's model calls through the provider's batch API, one batch per DAG level.

The one scheduler (flows/scheduler.py) still decides what runs when, with the ready set's
conditions, skips and failure mode; this module only changes how a ready task is answered
(`invoke`). A task of level L (the longest chain of dependencies above it) renders its prompt
exactly as `run_prompt` would (tasks/model_call.py: its model's options, context budget), and
waits; once every task of level L has either joined or settled another way (skipped, cancelled,
a sub-workflow, a task the batch cannot take), the level's calls go out as one batch per model
(tasks/batch_api.py: submit, then poll with backoff). An answered call completes its task with
the discounted usage; a call the batch failed, expired or cancelled takes the normal per-call
path (`run_prompt` with its retries, then the fallback chain), at most `breadth` at a time.

Taken by the batch: the first model of a task, if it is an OpenAI or Anthropic model, and a
plain-text answer. Structured output (`output_schema`) and every other provider go per call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import Task
from prefect.states import Completed, Failed, State

from promptdag.engine.events import TaskEvent, subscribe
from promptdag.errors import PermanentProviderError
from promptdag.flows.dispatch import Invoke
from promptdag.llm.base import Completion
from promptdag.llm.batch_api import BATCH_PROVIDERS, BatchLine, BatchOutcome, custom_id
from promptdag.llm.batch_vendors import vendor
from promptdag.llm.options import options_for
from promptdag.llm.registry import split_model
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import WorkflowSpec
from promptdag.spec.template import render_task_prompt
from promptdag.tasks.batch_api import BatchJob, submit_batch, wait_for_batch
from promptdag.tasks.model_call import ModelCall
from promptdag.tasks.run_prompt import PromptJob, PromptOutput
from promptdag.tasks.task_options import retry_options

_log = logging.getLogger("promptdag")


def levels(graph: WorkflowGraph) -> dict[str, int]:
    """Each task's level: 0 without dependencies, else one more than its deepest dependency."""
    level: dict[str, int] = {}
    for name in graph.names:  # dependencies first
        level[name] = 1 + max((level[dep] for dep in graph.depends_on[name]), default=-1)
    return level


@dataclass
class _Waiter:
    job: PromptJob
    line: BatchLine
    prompt: str
    options: dict[str, Any]
    answer: asyncio.Future[tuple[Completion | str, bool]]


class LevelBatches:
    """The scheduler's `invoke` for a batch-API run (see module docstring).

    Use as a context manager around the scheduler's run: it listens to the run's task events
    to know when a level has nobody left to wait for.
    """

    def __init__(self, spec: WorkflowSpec, graph: WorkflowGraph, inner: Invoke,
                 breadth: int) -> None:
        self.spec = spec
        self.inner = inner
        self.level = levels(graph)
        self.expected: dict[int, set[str]] = defaultdict(set)
        for name, level in self.level.items():
            self.expected[level].add(name)
        self.waiting: dict[int, dict[str, _Waiter]] = defaultdict(dict)
        self.per_call = asyncio.Semaphore(breadth)  # the per-call path keeps the run's breadth
        self.flushes: set[asyncio.Task[None]] = set()
        self._stop: Callable[[], None] | None = None

    def __enter__(self) -> LevelBatches:
        self._stop = subscribe(self._on_event)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop:
            self._stop()

    async def invoke(self, task: Task[Any, Any], job: PromptJob, upstream: dict[str, str],
                     outputs: dict[str, Any] | None) -> State[Any]:
        level = self.level.get(job.name)
        if level is None or job.fallback_index or not batchable(job):
            self._leave(job.name)
            return await self._per_call(task, job, upstream, outputs)
        try:
            waiter = await self._waiter(job, upstream, outputs)
        except Exception as exc:  # rendering or the body failed: the per-call path says why
            _log.info("%s: not batched (%s): calling it directly", job.name, exc)
            self._leave(job.name)
            return await self._per_call(task, job, upstream, outputs)
        self.expected[level].discard(job.name)
        self.waiting[level][job.name] = waiter
        self._maybe_flush(level)
        answer, reused = await waiter.answer
        if isinstance(answer, str):
            _log.info("%s: %s: calling it directly", job.name, answer)
            return await self._per_call(task, job, upstream, outputs)
        return _state(job, waiter, answer, reused)

    async def _per_call(self, task: Task[Any, Any], job: PromptJob, upstream: dict[str, str],
                        outputs: dict[str, Any] | None) -> State[Any]:
        async with self.per_call:
            return await self.inner(task, job, upstream, outputs)

    async def _waiter(self, job: PromptJob, upstream: dict[str, str],
                      outputs: dict[str, Any] | None) -> _Waiter:
        """The task's call as a batch line, rendered as `run_prompt` renders it."""
        model_name = job.models[0]
        options = options_for(model_name, job.options)
        call = ModelCall(model_name, options, job.name)
        prompt = render_task_prompt(
            job.template, job.context, upstream, set(job.references), outputs or {},
            max_chars=await call.prompt_budget(),
        )
        request = call.request(prompt, {"role": "task", "task": job.name})
        body = vendor(split_model(model_name)[0]).body(call.model, request)
        future: asyncio.Future[tuple[Completion | str, bool]] = (
            asyncio.get_running_loop().create_future())
        return _Waiter(job, BatchLine(custom_id=custom_id(job.name), body=body), prompt, options,
                       future)

    def _on_event(self, event: TaskEvent) -> None:
        if event.kind == "finished" and event.workflow == self.spec.name:
            self._leave(event.task)

    def _leave(self, name: str) -> None:
        """`name` settles without the batch: its level need not wait for it."""
        level = self.level.get(name)
        if level is not None and name in self.expected[level]:
            self.expected[level].discard(name)
            self._maybe_flush(level)

    def _maybe_flush(self, level: int) -> None:
        if self.expected[level] or not self.waiting[level]:
            return
        waiters = list(self.waiting.pop(level).values())
        flush = asyncio.get_running_loop().create_task(self._flush(level, waiters))
        self.flushes.add(flush)
        flush.add_done_callback(self.flushes.discard)

    async def _flush(self, level: int, waiters: list[_Waiter]) -> None:
        """One batch per model (and its options) of the level, side by side."""
        groups: dict[str, list[_Waiter]] = defaultdict(list)
        for waiter in waiters:
            key = json.dumps([waiter.job.models[0], waiter.options], sort_keys=True, default=str)
            groups[key].append(waiter)
        await asyncio.gather(*(self._one_batch(level, group) for group in groups.values()))

    async def _one_batch(self, level: int, waiters: list[_Waiter]) -> None:
        waiters.sort(key=lambda w: w.line.custom_id)  # the same lines, the same key, on resume
        job = BatchJob(model=waiters[0].job.models[0], options=waiters[0].options, level=level,
                       lines=[w.line for w in waiters])
        config = self.spec.config
        retries = retry_options(config.max_retries if config.enable_retry else 0,
                                config.retry_backoff_seconds)
        reused = False
        try:
            submit = submit_batch.with_options(
                task_run_name=f"submit batch: level {level}, {len(waiters)} calls to {job.model}",
                timeout_seconds=config.timeout_seconds, **retries)
            handle = await submit(job)
            wait = wait_for_batch.with_options(
                task_run_name=f"wait for batch {handle.batch_id}", **retries)
            state: State[Any] = await wait(job, handle, return_state=True)  # type: ignore[misc]
            reused = state.name == "Cached"
            outcome = BatchOutcome.model_validate(await state.aresult())
        except Exception as exc:  # the batch itself failed: every call goes per call
            outcome = BatchOutcome(status="failed")
            for waiter in waiters:
                outcome.failures[waiter.line.custom_id] = f"the batch failed: {exc}"
        for waiter in waiters:
            cid = waiter.line.custom_id
            answer = outcome.answers.get(cid)
            why = outcome.failures.get(cid) or f"batch {outcome.status}: no result"
            if not waiter.answer.done():
                waiter.answer.set_result((answer, reused) if answer else (why, False))


def batchable(job: PromptJob) -> bool:
    """Whether the batch API can take the job's call (see module docstring)."""
    return job.output_schema is None and split_model(job.models[0])[0] in BATCH_PROVIDERS


def _state(job: PromptJob, waiter: _Waiter, answer: Completion, reused: bool) -> State[Any]:
    """The task's outcome from its batch answer, as a `run_prompt` task run would end."""
    if answer.finish_reason == "length" and job.fail_on_truncation:
        error = PermanentProviderError(
            f"{job.models[0]}: the answer was cut at the token limit; raise max_tokens in "
            "model_options, or set fail_on_truncation: false to keep it")
        error.attempts = 1
        return Failed(data=error, message=str(error))
    output = PromptOutput(
        text=answer.text, model=job.models[0], prompt=waiter.prompt,
        attempts=0 if reused else 1, usage=answer.usage, reused=reused,
        finish_reason=answer.finish_reason,
    )
    return Completed(data=output)


async def run_in_batches(scheduler: Any) -> Any:
    """Run the scheduler with its ready tasks answered level by level through batches.

    Every task of a level must be able to wait at once, so the scheduler's breadth is lifted
    to the whole DAG; the per-call path keeps the workflow's own breadth.
    """
    batches = LevelBatches(scheduler.spec, scheduler.graph, scheduler.invoke, scheduler.breadth)
    scheduler.invoke = batches.invoke
    scheduler.breadth = max(scheduler.breadth, len(scheduler.graph.names))
    with batches:
        try:
            return await scheduler.run()
        finally:  # a batch still waited for when the run stops (its timeout): stop waiting
            for flush in list(batches.flushes):
                flush.cancel()
            await asyncio.gather(*batches.flushes, return_exceptions=True)
