"""Where task runs execute: on the flow's own event loop (`local`, the default) or on a Dask
cluster (`dask`, via prefect-dask's DaskTaskRunner).

Only the place changes: the ready-set scheduler still decides what runs when, and with what
breadth, priority and failure mode. On Dask, Prefect does not enforce `timeout_seconds`
(PrefectHQ/prefect#13004); `run_prompt` enforces its own copy of the timeout, so hanging calls
are still stopped. Dask workers talk to the Prefect API themselves, so the `dask` runner needs a
running Prefect server (Prefect's ephemeral mode fails on Dask workers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prefect import Task
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptdag.errors import ConfigError, SpecError
from promptdag.flows.dispatch import Invoke, run_locally
from promptdag.spec.models import WorkflowConfig
from promptdag.tasks.run_prompt import PromptJob


class DaskOptions(BaseModel):
    """`runner_options` for `runner: dask`: an existing cluster, or a local one to try it."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description='An existing scheduler, "tcp://host:8786".')
    n_workers: int = Field(2, ge=1, le=256, description="Workers of a local cluster.")
    threads_per_worker: int = Field(4, ge=1, le=256)
    processes: bool = Field(True, description="Local cluster workers as processes.")


def dask_options(config: WorkflowConfig) -> DaskOptions:
    try:
        return DaskOptions.model_validate(config.runner_options)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise SpecError(f"field 'config.runner_options.{field}': {first['msg']}") from None


def check_runner(config: WorkflowConfig, api_url: str | None) -> None:
    """Fail before anything runs when the runner cannot work here."""
    if config.runner != "dask":
        return
    dask_options(config)
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        raise ConfigError(
            "runner 'dask' needs prefect-dask: pip install -e '.[dask]'"
        ) from None
    if not api_url:
        raise ConfigError(
            "runner 'dask' needs a running Prefect server (Dask workers cannot use Prefect's "
            "ephemeral API): run `promptdag server start` and set PREFECT_API_URL"
        )


@asynccontextmanager
async def task_placement(config: WorkflowConfig) -> AsyncIterator[Invoke]:
    """The `invoke` the scheduler hands to `run_with_fallback` for this workflow's runner."""
    if config.runner == "local":
        yield run_locally
        return
    from prefect_dask import DaskTaskRunner

    options = dask_options(config)
    if options.address:
        runner = DaskTaskRunner(address=options.address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={
            "n_workers": options.n_workers,
            "threads_per_worker": options.threads_per_worker,
            "processes": options.processes,
            "host": "127.0.0.1",
            "dashboard_address": None,
        })
    with runner:
        await asyncio.to_thread(lambda: runner.client)  # start the cluster off the event loop

        async def invoke(
            task: Task[Any, Any],
            job: PromptJob,
            upstream: dict[str, str],
            outputs: dict[str, Any] | None,
        ) -> State[Any]:
            future = runner.submit(
                task, parameters={"job": job, "upstream": upstream, "outputs": outputs}
            )
            return await _finished(future.wrapped_future)

        yield invoke


async def _finished(dask_future: Any) -> State[Any]:
    """Await a distributed.Future without blocking the flow's event loop (or a thread)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def wake(_: Any) -> None:  # called in a Dask client thread
        loop.call_soon_threadsafe(settle)

    dask_future.add_done_callback(wake)
    await done
    state: State[Any] = dask_future.result()  # the task run's final state (return_type=state)
    return state


