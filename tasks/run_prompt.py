"""The Prefect task that runs one workflow task: render, call the model, return a typed result.

Prefect owns the retries (exponential backoff with jitter, retryable errors only) and the
timeout (the task is async, so the timeout cancels the model call at its next await). Around
that, three provider concerns are settled here, once for every provider:

- **HTTP timeout below the task timeout**: each call gets 90% of what is left of the attempt's
  timeout, so a stuck socket read fails as a retryable provider timeout, with the provider's
  name, before Prefect's own timeout fires.
- **Retry-After**: see `should_retry`.
- **Fallback**: a task's `model` may be a chain; see `run_with_fallback`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field

from promptdag.errors import PermanentProviderError, ProviderError, RetryableProviderError
from promptdag.events import TaskEvent, emit
from promptdag.llm.base import Usage
from promptdag.llm.options import options_for
from promptdag.llm.structured import complete_schema
from promptdag.schemas import resolve_schema
from promptdag.settings import get_settings
from promptdag.spec import TaskSpec, WorkflowConfig, WorkflowSpec
from promptdag.template import render_task_prompt
from promptdag.validation import task_models, task_options
from promptdag.tasks.model_call import ModelCall
from promptdag.tasks.prompt_cache import PROMPT_CACHE, SHARED_PROMPT_CACHE
from promptdag.tasks.result_persistence import note_unsaved, unsaved_reason


class PromptJob(BaseModel):
    """Everything one workflow task needs, as plain data (serialisable, hashable, UI-readable)."""

    workflow: str
    name: str
    template: str
    context: dict[str, Any] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)
    models: list[str] = Field(..., description="The model, or a fallback chain tried in order.")
    options: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON schema of a structured result (the task's output_schema)."
    )
    fallback_index: int = Field(0, description="Position of models[0] in the task's chain.")
    fail_on_truncation: bool = Field(
        False, description="An answer cut at the token limit fails the task instead."
    )

    @property
    def run_name(self) -> str:
        """The task run's name in the UI: the workflow task's, marked for a fallback model."""
        if not self.fallback_index:
            return self.name
        return f"{self.name} (fallback {self.fallback_index}: {self.models[0]})"

    @classmethod
    def from_spec(
        cls, spec: WorkflowSpec, task_spec: TaskSpec, references: frozenset[str]
    ) -> PromptJob:
        return cls(
            workflow=spec.name,
            name=task_spec.name,
            template=task_spec.prompt,
            context=task_spec.context,
            references=sorted(references),
            models=task_models(task_spec, spec),
            options=task_options(task_spec, spec),
            output_schema=resolve_schema(task_spec.output_schema)
            if task_spec.output_schema
            else None,
            fail_on_truncation=task_spec.fail_on_truncation
            if task_spec.fail_on_truncation is not None
            else spec.config.fail_on_truncation,
        )


class PromptOutput(BaseModel):
    """A successful model call for one workflow task."""

    text: str
    output: dict[str, Any] | None = Field(None, description="The structured result, if asked.")
    model: str = Field(..., description="The model that answered (of a fallback chain).")
    prompt: str
    attempts: int
    usage: Usage = Field(default_factory=Usage)
    fallback_errors: dict[str, str] = Field(
        default_factory=dict, description="Models tried before the one that answered, and why."
    )
    reused: bool = Field(False, description="Read back from an earlier run: no model call.")
    warning: str | None = Field(None, description="e.g. the result could not be saved.")
    finish_reason: str | None = Field(None, description="Why the model stopped (length: cut).")


async def should_retry(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what can succeed on retry: retryable provider errors and timeouts; and do not
    let the retry start before a rate limit's Retry-After has passed.

    Prefect's retry delays are fixed when the task is built, so an answer's Retry-After cannot
    change them. Prefect awaits this condition after the failed attempt has ended (outside the
    task's timeout) and before it schedules the retry; waiting here until the error's
    `not_before` makes the next attempt start no earlier than the provider asked, then the usual
    backoff applies on top. Nothing waits when no retry is left.
    """
    exc = state.data
    retry = isinstance(exc, TimeoutError) or (isinstance(exc, ProviderError) and exc.retryable)
    if retry and isinstance(exc, BaseException):
        _announce_retry(task_run, exc)
    if isinstance(exc, RetryableProviderError):
        await wait_for_retry_after(exc)
    return retry


def _announce_retry(task_run: TaskRun, exc: BaseException) -> None:
    """Tell progress listeners (the CLI) that a task is retried, and why."""
    context = TaskRunContext.get()
    job = context.parameters.get("job") if context and context.parameters else None
    if not isinstance(job, PromptJob):
        return
    why = describe_failure(exc, context.task.timeout_seconds if context else None)
    emit(TaskEvent(job.workflow, job.name, "retrying", None, 0, 0, error=why,
                   attempt=(task_run.run_count or 1) + 1))


async def wait_for_retry_after(exc: RetryableProviderError) -> float:
    """Sleep until the error's `not_before` (if any); return the seconds waited."""
    if exc.not_before is None:
        return 0.0
    wait = exc.not_before - time.monotonic()
    if wait <= 0:
        return 0.0
    _logger().info("Rate limited: waiting %.2f s (Retry-After) before the retry", wait)
    await asyncio.sleep(wait)
    return wait


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a run (a direct call in a test)
        return logging.getLogger("promptdag")


@task(
    name="run_prompt",
    task_run_name=lambda parameters: prompt_run_name(parameters),  # type: ignore[arg-type]
    cache_policy=PROMPT_CACHE,  # resume: see tasks/prompt_cache.py
    persist_result=True,
    result_serializer="json",
)
async def run_prompt(
    job: PromptJob, upstream: dict[str, str], outputs: dict[str, Any] | None = None
) -> PromptOutput:
    """Render the job's prompt with its upstream results and ask its (first) model.

    `outputs` holds the structured results of upstream tasks, for `{{ Task.field }}`. The
    prompt is fitted to the model's context window: appended upstream results are shortened
    first (with a visible marker), explicitly referenced ones last.
    """
    model_name = job.models[0]
    call = ModelCall(model_name, options_for(model_name, job.options), job.name)

    async def ask() -> PromptOutput:
        prompt = render_task_prompt(
            job.template, job.context, upstream, set(job.references), outputs or {},
            max_chars=await call.prompt_budget(),
        )
        request = call.request(prompt, {"role": "task", "task": job.name})
        if job.output_schema is None:
            completion = await call.model.complete(request)
            text, usage, structured = completion.text, completion.usage, None
            finish_reason = completion.finish_reason
        else:
            structured, usage = await complete_schema(call.model, request, job.output_schema)
            text, finish_reason = json.dumps(structured, ensure_ascii=False), "stop"
        if finish_reason == "length" and job.fail_on_truncation:
            raise PermanentProviderError(
                f"{model_name}: the answer was cut at the token limit (max_tokens "
                f"{call.options.get('max_tokens') or get_settings().default_max_tokens}); raise "
                "max_tokens in model_options, or set fail_on_truncation: false to keep it"
            )
        return PromptOutput(
            text=text, output=structured, model=model_name, prompt=prompt,
            attempts=call.attempt, usage=usage, finish_reason=finish_reason,
        )

    return await call.run(ask())


run_prompt.on_rollback(note_unsaved)  # type: ignore[arg-type]  # Prefect awaits async hooks


async def run_locally(
    task: Task[Any, Any], job: PromptJob, upstream: dict[str, str], outputs: dict[str, Any] | None
) -> State[Any]:
    """Run the task run on the flow's own event loop (the default runner) and return its state."""
    state: State[Any] = await task(job, upstream, outputs, return_state=True)
    return state


Invoke = Callable[
    [Task[Any, Any], PromptJob, dict[str, str], "dict[str, Any] | None"], Awaitable[State[Any]]
]


async def run_with_fallback(
    job: PromptJob,
    upstream: dict[str, str],
    options: dict[str, Any],
    outputs: dict[str, Any] | None = None,
    invoke: Invoke = run_locally,
) -> PromptOutput:
    """Ask the job's models in turn until one answers; the output names the one that did.

    Each model gets a task run of its own with the full retry budget and timeout (`options`),
    so Prefect still owns every retry and the UI shows which model failed how. The next model
    is tried when one fails for good: a permanent error, or retries exhausted. `attempts` adds
    up the calls of every model tried. When all fail, the error names each model's failure.
    `invoke` decides where a task run executes (see flows/runners.py); never what runs when.
    """
    errors: dict[str, str] = {}
    attempts = 0
    last: BaseException | None = None
    task = configured_prompt_task(options)
    for index, model in enumerate(job.models):
        state = await invoke(
            task,
            job.model_copy(update={"models": job.models[index:], "fallback_index": index}),
            upstream,
            outputs,
        )
        value = await state.aresult(raise_on_failure=False)
        if not state.is_completed() or isinstance(value, BaseException):
            exc = value if isinstance(value, BaseException) else RuntimeError(state.message)
            attempts += attempts_of(exc, options)
            errors[model] = describe_failure(exc, options.get("timeout_seconds"))
            last = exc
            continue
        output = PromptOutput.model_validate(value)
        if state.name == "Cached":  # finished in an earlier run: no call made in this one
            output = output.model_copy(update={"reused": True, "attempts": 0})
        elif why := unsaved_reason(state.state_details.task_run_id):
            output = output.model_copy(update={"warning": f"result not saved: {why}"})
        return output.model_copy(
            update={"attempts": attempts + output.attempts, "fallback_errors": errors}
        )
    assert last is not None  # a job has at least one model
    if len(job.models) == 1:
        last.attempts = attempts  # type: ignore[attr-defined]
        raise last
    error = ProviderError(
        f"all {len(job.models)} models failed: "
        + "; ".join(f"{model}: {why}" for model, why in errors.items())
    )
    error.attempts = attempts
    raise error


def attempts_of(exc: BaseException, options: dict[str, Any]) -> int:
    """Calls a failed task run made: recorded on our errors; a timeout used the whole budget."""
    attempts = getattr(exc, "attempts", None)
    if attempts is None:
        attempts = int(options.get("retries") or 0) + 1
    return int(attempts)


def describe_failure(exc: BaseException, timeout: float | None) -> str:
    """One line for a failed task run."""
    if isinstance(exc, ProviderError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    return f"{type(exc).__name__}: {exc}"


def prompt_run_name(parameters: dict[str, Any]) -> str:
    """Task runs are named after the workflow task (Prefect calls this with the parameters)."""
    job = parameters.get("job")
    if isinstance(job, PromptJob):
        return job.run_name
    if isinstance(job, dict):
        return str(job.get("name", "run_prompt"))
    return "run_prompt"


_configured: dict[tuple[tuple[str, Any], ...], Task[Any, Any]] = {}


def configured_prompt_task(options: dict[str, Any]) -> Task[Any, Any]:
    """`run_prompt` with these options, built once per distinct options.

    `Task.with_options` builds a new Task (reading the function's source): about 1 ms, on the
    per-task hot path. Workflows have few distinct option sets, so they are cached; the run
    name comes from the parameters (`prompt_run_name`), not from the options.
    """
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    task = _configured.get(key)
    if task is None:
        task = _configured[key] = run_prompt.with_options(**options)
    return task


def retry_options(retries: int, backoff: float) -> dict[str, Any]:
    """The one retry policy (workflow and role tasks): exponential backoff from `backoff`
    seconds, doubling, with jitter; retryable failures only."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff)(retries) if backoff and retries else 0,
        "retry_jitter_factor": 0.5 if backoff else None,
        "retry_condition_fn": should_retry,
    }


def prompt_task_options(spec: WorkflowSpec, task_spec: TaskSpec) -> dict[str, Any]:
    """Prefect options for one workflow task, declared once as data (applied with_options)."""
    config = spec.config
    retries = task_spec.max_retries if task_spec.max_retries is not None else config.max_retries
    retries = retries if config.enable_retry else 0
    return {
        **retry_options(retries, config.retry_backoff_seconds),
        "timeout_seconds": task_spec.timeout_seconds or config.timeout_seconds,
        # No task-run tags: Prefect acquires tag concurrency slots for every tagged task run
        # (measured: 38% of task time at 300 tasks, 2 s stalls on SQLite). The flow run carries
        # the workflow tag instead (flows/artifacts.py).
        **cache_options(config, task_spec),
    }


def cache_options(config: WorkflowConfig, task_spec: TaskSpec) -> dict[str, Any]:
    """Which earlier results the task may reuse (tasks/prompt_cache.py): its own run's (resume),
    or with `cache: true` any run's identical request, until `cache_expiration`."""
    cached = task_spec.cache if task_spec.cache is not None else config.cache
    if not cached:
        return {"cache_policy": PROMPT_CACHE}
    expiration = task_spec.cache_expiration or config.cache_expiration
    return {
        "cache_policy": SHARED_PROMPT_CACHE,
        "cache_expiration": timedelta(seconds=expiration) if expiration else None,
        # --fresh: call the model even for cached requests (and cache this run's answer)
        "refresh_cache": not config.reuse_results,
    }
