"""How a ready task becomes task runs: the model of a fallback chain to ask, as a task run of
`run_prompt` with the task's options, placed by the runner (flows/runners.py). The scheduler
(flows/scheduler.py) decides what runs when; this module, how one task runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prefect import Task
from prefect.states import State
from prefect.utilities.annotations import quote

from promptdag.errors import ProviderError, attempts_of, describe_failure
from promptdag.tasks.result_persistence import unsaved_reason
from promptdag.tasks.run_prompt import PromptJob, PromptOutput, run_prompt


async def run_locally(
    task: Task[Any, Any], job: PromptJob, upstream: dict[str, str], outputs: dict[str, Any] | None
) -> State[Any]:
    """Run the task run on the flow's own event loop (the default runner) and return its state.

    The arguments are quoted: they hold no futures, and Prefect would otherwise walk every
    field of them looking for some, three times per task run (a share of each task's time)."""
    state: State[Any] = await task(quote(job), quote(upstream), quote(outputs), return_state=True)
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
        attempt = job if index == 0 else job.model_copy(
            update={"models": job.models[index:], "fallback_index": index})
        state = await invoke(task, attempt, upstream, outputs)
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


_configured: dict[tuple[tuple[str, Any], ...], Task[Any, Any]] = {}


def configured_prompt_task(options: dict[str, Any]) -> Task[Any, Any]:
    """`run_prompt` with these options, built once per distinct options.

    `Task.with_options` builds a new Task (reading the function's source): too slow for the
    per-task hot path. Workflows have few distinct option sets, so they are cached; the run
    name comes from the parameters (`prompt_run_name`), not from the options.
    """
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    task = _configured.get(key)
    if task is None:
        task = _configured[key] = run_prompt.with_options(**options)
    return task
