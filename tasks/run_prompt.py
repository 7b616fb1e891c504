"""The Prefect task that runs one workflow task: render, call the model, return a typed result.

The job is plain data (`PromptJob`); the call goes through the one model-call path
(tasks/model_call.py: provider limits, HTTP timeout below the task timeout, context budget).
Prefect owns retries and the timeout, with the options declared in tasks/task_options.py;
flows/dispatch.py decides which model of a fallback chain runs, and where.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from pydantic import BaseModel, Field

from promptdag.errors import PermanentProviderError
from promptdag.llm.base import Usage
from promptdag.llm.options import options_for
from promptdag.llm.structured import complete_schema
from promptdag.settings import get_settings
from promptdag.spec.models import TaskSpec, WorkflowSpec
from promptdag.spec.schemas import resolve_schema
from promptdag.spec.template import render_task_prompt
from promptdag.spec.validation import task_models, task_options
from promptdag.tasks.model_call import ModelCall
from promptdag.tasks.prompt_cache import PROMPT_CACHE
from promptdag.tasks.result_persistence import note_unsaved


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


def prompt_run_name(parameters: dict[str, Any]) -> str:
    """Task runs are named after the workflow task (Prefect calls this with the parameters)."""
    job = parameters.get("job")
    if isinstance(job, PromptJob):
        return job.run_name
    if isinstance(job, dict):
        return str(job.get("name", "run_prompt"))
    return "run_prompt"


