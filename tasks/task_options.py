"""Prefect options of promptdag's tasks, declared once as data and applied with `with_options`:
the one retry policy (exponential backoff with jitter, retryable failures only, Retry-After
honoured), each workflow task's options (retries, timeout, cache), and the role tasks'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State
from prefect.tasks import exponential_backoff

from promptdag.engine.events import TaskEvent, emit
from promptdag.engine.objective import ObjectiveConfig
from promptdag.errors import ProviderError, RetryableProviderError, describe_failure
from promptdag.spec.models import TaskSpec, WorkflowConfig, WorkflowSpec
from promptdag.tasks.prompt_cache import PROMPT_CACHE, SHARED_PROMPT_CACHE
from promptdag.tasks.run_prompt import PromptJob


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
        # (a large share of task time, and stalls on SQLite). The flow run carries
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


def role_task_options(config: ObjectiveConfig, run_name: str) -> dict[str, Any]:
    """Prefect options for a role task: same retry and timeout policy as workflow tasks."""
    return {
        "task_run_name": run_name,
        **retry_options(config.max_retries, config.retry_backoff_seconds),
        "timeout_seconds": config.timeout_seconds,
    }
