"""The Prefect tasks of a provider batch (llm/batch_api.py): submit it, then wait for its end.

Both results are persisted under a key made of the run's resume scope and the batch's lines
(`BATCH_CACHE`), which is where a run records its batch: a run killed while its batch is in
progress (kill -9, a lost worker) resumes with `submit_batch` answered from that record, the same
batch id, and `wait_for_batch` polls that batch instead of submitting another. A finished wait
is reused the same way, so a resumed run never downloads a batch's results twice.

Waiting is a poll with backoff (`batch_poll_seconds`, times 1.5 each poll, at most
`batch_poll_max_seconds`): an asyncio sleep, so the flow's event loop keeps running the rows'
per-call tasks meanwhile. Prefect owns the retries of both tasks (a failed poll or upload is
retried as any provider call is: retryable failures only).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from promptdag.llm.batch_api import (
    BatchHandle,
    BatchLine,
    BatchOutcome,
    next_poll,
    report,
)
from promptdag.llm.batch_vendors import vendor
from promptdag.llm.registry import get_model, split_model
from promptdag.settings import get_settings
from promptdag.tasks.prompt_cache import InputsPolicy


class BatchJob(BaseModel):
    """One batch: the calls of one DAG level to one model, as plain data (hashable, UI-readable)."""

    model: str = Field(..., description='The "provider:model" every line asks.')
    options: dict[str, Any] = Field(default_factory=dict, description="The model's options.")
    level: int = Field(..., description="The DAG level (0: tasks with no dependencies).")
    lines: list[BatchLine]


BATCH_CACHE = InputsPolicy(kind="batch")  # the batch's record (see module docstring)


@task(name="submit_batch", cache_policy=BATCH_CACHE, persist_result=True,
      result_serializer="json")
async def submit_batch(job: BatchJob) -> BatchHandle:
    """Send the job's lines as one provider batch; the handle that finds it again."""
    provider, _ = split_model(job.model)
    batch_id = await vendor(provider).submit(get_model(job.model, job.options), job.lines)
    handle = BatchHandle(provider=provider, model=job.model, batch_id=batch_id,
                         requests=len(job.lines))
    _logger().info("Submitted batch %s: %d calls to %s (level %d)", batch_id, len(job.lines),
                   job.model, job.level)
    report(f"batch {batch_id} ({job.model}): submitted, {len(job.lines)} calls")
    return handle


@task(name="wait_for_batch", cache_policy=BATCH_CACHE, persist_result=True,
      result_serializer="json")
async def wait_for_batch(job: BatchJob, handle: BatchHandle) -> BatchOutcome:
    """Poll the batch with backoff until it ends; every line's answer or why there is none."""
    settings = get_settings()
    model = get_model(job.model, job.options)
    wire = vendor(handle.provider)
    wait, last = settings.batch_poll_seconds, ""
    while True:
        progress = await wire.progress(model, handle.batch_id)
        line = progress.line(handle)
        if line != last:  # a state change: progress and the run's log
            report(line)
            _logger().info("%s", line)
            last = line
        if progress.ended:
            break
        await asyncio.sleep(wait)
        wait = next_poll(wait, settings.batch_poll_max_seconds)
    outcome = await wire.results(model, handle.batch_id, progress)
    for item in job.lines:  # a line the vendor said nothing about (a failed batch)
        if item.custom_id not in outcome.answers and item.custom_id not in outcome.failures:
            outcome.failures[item.custom_id] = (
                f"{job.model}: batch {handle.batch_id} {progress.status}: no result")
    return outcome


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a run (a direct call in a test)
        return logging.getLogger("promptdag")
