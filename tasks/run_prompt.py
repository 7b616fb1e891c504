"""The Prefect task that runs one workflow task: render, call the model, return a typed result.

Prefect owns the retries (exponential backoff with jitter, retryable errors only) and the
timeout (the task is async, so the timeout cancels the model call at its next await).
"""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.runtime import task_run as current_task_run
from prefect.states import State
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, Field

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm.base import CompletionRequest, Usage
from promptdag.llm.registry import get_model
from promptdag.spec import TaskSpec, WorkflowSpec
from promptdag.template import render_task_prompt
from promptdag.validation import task_models, task_options


class PromptJob(BaseModel):
    """Everything one workflow task needs, as plain data (serialisable, hashable, UI-readable)."""

    workflow: str
    name: str
    template: str
    context: dict[str, Any] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)
    models: list[str]
    options: dict[str, Any] = Field(default_factory=dict)

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
        )


class PromptOutput(BaseModel):
    """A successful model call for one workflow task."""

    text: str
    model: str
    prompt: str
    attempts: int
    usage: Usage = Field(default_factory=Usage)


def should_retry(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what can succeed on retry: retryable provider errors and timeouts."""
    exc = state.data
    if isinstance(exc, ProviderError):
        return exc.retryable
    return isinstance(exc, TimeoutError)


@task(name="run_prompt", cache_policy=NO_CACHE, persist_result=False)
async def run_prompt(job: PromptJob, upstream: dict[str, str]) -> PromptOutput:
    """Render the job's prompt with its upstream results and ask its model."""
    attempt = current_task_run.run_count or 1
    prompt = render_task_prompt(job.template, job.context, upstream, set(job.references))
    model_name = job.models[0]
    try:
        model = get_model(model_name, job.options)
        completion = await model.complete(
            CompletionRequest(
                prompt=prompt, options=job.options, attempt=attempt, task_name=job.name
            )
        )
    except ProviderError as exc:
        exc.attempts = attempt
        raise
    except Exception as exc:
        # An unexpected failure is a bug or a misconfiguration: never worth a retry.
        error = PermanentProviderError(f"{type(exc).__name__}: {exc}")
        error.attempts = attempt
        raise error from exc
    return PromptOutput(
        text=completion.text,
        model=completion.model,
        prompt=prompt,
        attempts=attempt,
        usage=completion.usage,
    )


def prompt_task_options(spec: WorkflowSpec, task_spec: TaskSpec) -> dict[str, Any]:
    """Prefect options for one workflow task, declared once as data (applied with_options)."""
    config = spec.config
    retries = task_spec.max_retries if task_spec.max_retries is not None else config.max_retries
    retries = retries if config.enable_retry else 0
    backoff = config.retry_backoff_seconds
    return {
        "task_run_name": task_spec.name,
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff)(retries) if backoff and retries else 0,
        "retry_jitter_factor": 0.5 if backoff else None,
        "retry_condition_fn": should_retry,
        "timeout_seconds": task_spec.timeout_seconds or config.timeout_seconds,
        "tags": [f"workflow:{spec.name}"],
    }
