"""A batch run's model calls through the provider's batch API, one batch per DAG level.

The one scheduler (flows/scheduler.py) still decides what runs when, with the ready set's
conditions, skips and failure mode; this module only changes how a ready task is answered
(`invoke`). A ready task renders its prompt exactly as `run_prompt` would (tasks/model_call.py:
its model's options, context budget) and waits; once every task in progress is waiting (no
per-call task, sub-workflow or rendering is still under way that could make more tasks ready),
the waiting calls go out as one batch per level (the longest chain of dependencies above a
task) and model (tasks/batch_api.py: submit, then poll with backoff). Every row's tasks being
in one DAG, that is one batch per DAG level: the rows' level-0 tasks, then their level-1 tasks
with the level-0 answers, and so on. An answered call completes its task with
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
from promptdag.llm.registry import get_model, split_model
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import WorkflowSpec
from promptdag.spec.template import render_task_prompt
from promptdag.tasks.batch_api import BatchJob, submit_batch, wait_for_batch
from promptdag.tasks.model_call import ModelCall
from promptdag.tasks.run_prompt import PromptJob, PromptOutput
from promptdag.tasks.task_options import retry_options

_log = logging.getLogger("promptdag")
MAX_BATCH_LINES = 50_000  # OpenAI's limit of requests per batch (Anthropic's: 100,000)


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

    Use as a context manager around the scheduler's run: it follows the run's task events to
    know which tasks are in progress, and sends the waiting calls as batches once every task in
    progress is waiting for one (nothing else can still join them).
    """

    def __init__(self, spec: WorkflowSpec, graph: WorkflowGraph, inner: Invoke,
                 breadth: int) -> None:
        self.spec = spec
        self.inner = inner
        self.level = levels(graph)
        self.in_progress: set[str] = set()  # started, not yet settled
        self.waiting: dict[str, _Waiter] = {}
        self.per_call = asyncio.Semaphore(breadth)  # the per-call path keeps the run's breadth
        self.flushes: set[asyncio.Task[None]] = set()
        self._stop: Callable[[], None] | None = None

    def __enter__(self) -> LevelBatches:
        self._stop = subscribe(self._on_event)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop:
            self._stop()

    def level_of(self, name: str) -> int:
        """A run task's level, by its own name or its workflow task's (`[row] Task`)."""
        found = self.level.get(name)
        if found is None:
            found = self.level.get(name.split("] ", 1)[-1], 0)
        return found

    async def invoke(self, task: Task[Any, Any], job: PromptJob, upstream: dict[str, str],
                     outputs: dict[str, Any] | None) -> State[Any]:
        if job.fallback_index or not batchable(job):
            return await self._per_call(task, job, upstream, outputs)
        try:
            waiter = await self._waiter(job, upstream, outputs)
        except Exception as exc:  # rendering or the body failed: the per-call path says why
            _log.info("%s: not batched (%s): calling it directly", job.name, exc)
            return await self._per_call(task, job, upstream, outputs)
        self.waiting[job.name] = waiter
        self._check_soon()
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
        # the vendor's own adapter writes the body (call.model is its paced, masked wrapper)
        body = vendor(split_model(model_name)[0]).body(get_model(model_name, options), request)
        future: asyncio.Future[tuple[Completion | str, bool]] = (
            asyncio.get_running_loop().create_future())
        return _Waiter(job, BatchLine(custom_id=custom_id(job.name), body=body), prompt, options,
                       future)

    def _on_event(self, event: TaskEvent) -> None:
        if event.workflow != self.spec.name:
            return
        if event.kind == "started":
            self.in_progress.add(event.task)
        elif event.kind == "finished":
            self.in_progress.discard(event.task)
            self._check_soon()

    def _check_soon(self) -> None:
        """Check for a batch to send two event-loop turns from now: a task settled now makes
        its dependents ready in the same turn, and they start (and are in progress) in the
        next one, before this check runs."""
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._check)

    def _check(self) -> None:
        """Send what waits once every task in progress is waiting for a batch."""
        if not self.waiting or not self.in_progress <= set(self.waiting):
            return
        waiters = list(self.waiting.values())
        self.waiting.clear()
        flush = asyncio.get_running_loop().create_task(self._flush(waiters))
        self.flushes.add(flush)
        flush.add_done_callback(self.flushes.discard)

    async def _flush(self, waiters: list[_Waiter]) -> None:
        """One batch per level and model (with its options), side by side."""
        groups: dict[str, list[_Waiter]] = defaultdict(list)
        for waiter in waiters:
            key = json.dumps([self.level_of(waiter.job.name), waiter.job.models[0],
                              waiter.options], sort_keys=True, default=str)
            groups[key].append(waiter)
        await asyncio.gather(*(self._one_batch(self.level_of(group[0].job.name), group)
                               for group in groups.values()))

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
    to `MAX_BATCH_LINES` (waiting holds no slot of anything): a level with more calls goes out
    as several batches. The per-call path keeps the workflow's own breadth.
    """
    batches = LevelBatches(scheduler.spec, scheduler.graph, scheduler.invoke, scheduler.breadth)
    scheduler.invoke = batches.invoke
    scheduler.breadth = max(scheduler.breadth, MAX_BATCH_LINES)
    with batches:
        try:
            return await scheduler.run()
        finally:  # a batch still waited for when the run stops (its timeout): stop waiting
            for flush in list(batches.flushes):
                flush.cancel()
            await asyncio.gather(*batches.flushes, return_exceptions=True)
