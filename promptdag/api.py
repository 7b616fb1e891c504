"""Run workflows from Python: `run(spec)` and `await arun(spec)`.

An entry point like the CLI (it sits on top of flows/ and imports Prefect lazily).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptdag.engine.objective import ObjectiveRequest, ObjectiveResult
from promptdag.engine.results import WorkflowResult
from promptdag.errors import SpecError
from promptdag.spec.models import WorkflowSpec, load_spec, parse_spec
from promptdag.spec.validation import validate_spec


def as_spec(spec: WorkflowSpec | dict[str, Any] | str | Path) -> WorkflowSpec:
    """Accept a spec model, a parsed dict (e.g. a seed API body) or a path to a spec file."""
    if isinstance(spec, WorkflowSpec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    return parse_spec(spec)


MAX_INLINE_SPEC_BYTES = 400_000  # Prefect refuses flow-run parameters over 512 KB


def as_parameter(spec: WorkflowSpec) -> WorkflowSpec | str:
    """The spec itself, or for a large one the path of a copy stored under PREFECT_HOME.

    Stored specs are content-addressed (the same spec is written once) and named after the
    workflow, so the flow run still reads like the spec.
    """
    text = spec.model_dump_json(exclude_unset=True)
    if len(spec.model_dump_json().encode()) <= MAX_INLINE_SPEC_BYTES:  # as Prefect sends it
        return spec
    import re

    slug = re.sub(r"[^A-Za-z0-9_.]+", "_", spec.name)[:60].strip("_") or "workflow"
    return _stored(text, "specs", slug, ".json")


def _stored(text: str, folder: str, stem: str, suffix: str) -> str:
    """`text` written once under PREFECT_HOME/promptdag/<folder>, named by its content."""
    import hashlib

    from prefect.settings import PREFECT_HOME

    where = Path(PREFECT_HOME.value()) / "promptdag" / folder
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:16]}{suffix}"
    if not path.exists():
        path.write_text(text, encoding="utf-8")
    return str(path)


def as_data_parameter(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
    """A batch's rows, or for many rows the path of a stored JSONL copy (Prefect's 512 KB
    parameter limit; content-addressed, as large specs are)."""
    import json

    lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    if len(lines.encode()) <= MAX_INLINE_SPEC_BYTES:
        return rows
    return _stored(lines, "data", "rows", ".jsonl")


def spec_fingerprint(spec: WorkflowSpec) -> str:
    """Names "the same work" across runs: the workflow's name, in this result storage.

    Not the spec's content: a user who fixes the prompt that failed and runs again resumes
    the failed run, and since cache keys are made of each task's content, only the changed
    task and its dependents run again. Results live in one storage, so a run is only resumed
    by runs that can read its results.
    """
    from promptdag.flows.resume import fingerprint
    from promptdag.tasks.result_persistence import storage_path

    return fingerprint({"flow": "run-workflow", "workflow": spec.name,
                        "storage": str(storage_path())})


def _notice(message: str) -> None:
    logging.getLogger("promptdag").warning(message)


def _reaching_prefect(
    on_notice: Callable[[str], None] | None,
) -> contextlib.AbstractContextManager[object]:
    """Prefect as the CLI reaches it (promptdag/remote/autoserver.py): PREFECT_API_URL when
    set, else the local server running in PREFECT_HOME, else one started in the background
    (said once through `on_notice`; `PROMPTDAG_AUTO_SERVER=false` never starts one). Never
    Prefect's temporary server beside a running one on the same SQLite database."""
    from promptdag.remote.autoserver import reach_prefect

    return reach_prefect(start=True, say=on_notice or _notice)


async def _run_to_end(
    flow: Any,
    parameters: dict[str, Any],
    print_: str,
    resume: bool,
    on_notice: Callable[[str], None] | None,
) -> tuple[Any, str | None]:
    """The one way `arun` and `arun_objective` start a run: inside a flow, as its subflow;
    otherwise a new flow run that resumes the latest unfinished run of the same work (`print_`)
    when `resume`, run to its end. Its result, and why the API was lost if it was.

    Raises:
        Exception: what the flow raised instead of returning a result.
    """
    from prefect.context import FlowRunContext

    from promptdag.flows.lost_api import run_to_end
    from promptdag.flows.resume import start_run

    say = on_notice or _notice
    lost_api: str | None = None
    if FlowRunContext.get() is not None:  # called from a flow: a subflow of it, in its scope
        state = await flow(**parameters, return_state=True)
        result = await state.aresult(raise_on_failure=False)
    else:
        flow_run, resumed = await start_run(flow, parameters, print_, resume=resume)
        if resumed is not None:
            say(resumed.message())
        outcome = await run_to_end(
            flow, flow_run,
            {**parameters, "resume_scope": resumed.scope if resumed else None})
        result = await outcome.value()
        if outcome.lost_api:
            say(outcome.lost_api)
            lost_api = outcome.lost_api
        elif resumed is not None and (reused := _reused(result)) is not None:
            say(resumed.reused(*reused))  # what was in fact reused, counted after the run
    if isinstance(result, BaseException):
        raise result
    return result, lost_api


def _reused(result: Any) -> tuple[int, int] | None:
    """(tasks reused, tasks) of a workflow's result; None for anything else."""
    if isinstance(result, WorkflowResult):
        return result.summary.reused_count, result.summary.total_tasks
    if isinstance(result, dict) and "tasks" in result and "objective" not in result:
        try:
            done = WorkflowResult.model_validate(result)
        except ValueError:
            return None
        return done.summary.reused_count, done.summary.total_tasks
    return None


async def arun(
    spec: WorkflowSpec | dict[str, Any] | str | Path,
    on_notice: Callable[[str], None] | None = None,
    data: list[dict[str, Any]] | str | Path | None = None,
    limit: int | None = None,
    load_rows: bool = True,
) -> WorkflowResult:
    """Validate, then run the spec as a Prefect flow; the result whether it completed or not.

    A new run calls the models afresh, except when the latest run of the same spec did not
    complete: then it resumes that run, reusing its finished tasks, and says so through
    `on_notice` (default: a warning on the `promptdag` logger). If the Prefect API goes away
    before the run could record its end, the result comes from memory, with a `warning`.
    `config.reuse_results: false` (`--fresh`) starts over instead.

    `data` makes it a batch: the workflow once per row (mappings, or a .jsonl/.csv path), all
    rows in one run (promptdag/engine/batch.py); the result's `rows` holds each row's outcome.
    A file is streamed (promptdag/engine/row_window.py): its first rows are checked here, the
    rest as they are read (a bad one is a failed row); `limit` keeps its first rows only. A
    batch of more than 1,000 rows keeps them in its row log (`rows_file`); `load_rows` reads
    them back into `rows` (the CLI, which writes rows as they end, does not).
    """
    workflow = as_spec(spec)
    batch: dict[str, Any] = {}
    if data is None:
        validate_spec(workflow)  # bad input fails here, before Prefect starts
    elif isinstance(data, (str, Path)):  # streamed: the first rows are checked now
        from promptdag.engine.batch import check_first_rows

        check_first_rows(workflow, data, limit)
        batch = {"data": str(Path(data).resolve()), "row_limit": limit}
    else:  # rows in memory: every row's instance is checked
        from promptdag.engine.batch import validate_batch

        rows = list(data)[:limit]
        validate_batch(workflow, rows)
        batch = {"data": as_data_parameter(rows)}
    with _reaching_prefect(on_notice):
        from prefect.settings import PREFECT_API_URL

        from promptdag.flows.run_workflow import run_workflow
        from promptdag.flows.runners import check_runner
        from promptdag.tasks.result_persistence import check_storage

        check_runner(workflow.config, PREFECT_API_URL.value())
        check_storage()  # a full or read-only result storage: one clear line, before any call
        result, lost_api = await _run_to_end(
            run_workflow, {"spec": as_parameter(workflow), **batch},
            spec_fingerprint(workflow), workflow.config.reuse_results, on_notice)
    if lost_api:
        return _with_rows(WorkflowResult.model_validate(result).model_copy(
            update={"warning": lost_api}), load_rows)
    return _with_rows(WorkflowResult.model_validate(result), load_rows)


def _with_rows(result: WorkflowResult, load: bool) -> WorkflowResult:
    """A large batch's rows read back from its row log, when asked for."""
    if not load or result.rows is not None or result.rows_file is None:
        return result
    from promptdag.flows.row_log import read_log

    return result.model_copy(update={"rows": read_log(result.rows_file)})


def run(
    spec: WorkflowSpec | dict[str, Any] | str | Path,
    on_notice: Callable[[str], None] | None = None,
    data: list[dict[str, Any]] | str | Path | None = None,
    limit: int | None = None,
    load_rows: bool = True,
) -> WorkflowResult:
    """Synchronous `arun`, for scripts and notebooks without an event loop."""
    return asyncio.run(arun(spec, on_notice, data, limit, load_rows))


def as_objective_request(
    objective: ObjectiveRequest | dict[str, Any] | str,
    context: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    check_keys: bool = True,
) -> ObjectiveRequest:
    """An objective text (with optional context/config) or a seed `plan-execute` body; every
    model it may call checked (and, with `check_keys`, their keys: not for a submission, whose
    worker checks them)."""
    from pydantic import ValidationError

    from promptdag.spec.models import describe_validation_error

    if isinstance(objective, ObjectiveRequest):
        return objective
    data: dict[str, Any] = (
        dict(objective) if isinstance(objective, dict) else {"objective": objective}
    )
    if context is not None:
        data["context"] = context
    if config is not None:
        data["config"] = {**data.get("config", {}), **config}
    from promptdag.spec.input_limits import check_context, measure

    measure(data, "objective")  # depth and size bounded before pydantic walks it
    if data.get("context") is not None:
        check_context(data["context"], "objective")
    try:
        request = ObjectiveRequest.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"objective: {describe_validation_error(exc, data)}") from None
    from promptdag.spec.validation import check_model_ready

    for model in request.config.models():  # unknown models and missing keys: before any run
        check_model_ready(model, request.config.model_options, check_keys=check_keys)
    return request


async def arun_objective(
    objective: ObjectiveRequest | dict[str, Any] | str,
    context: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    fresh: bool = False,
    on_notice: Callable[[str], None] | None = None,
) -> ObjectiveResult:
    """Plan, execute and reflect on an objective; the result whether it completed or not.

    As for `arun`: when the latest run of the same objective (and context) did not complete,
    this run resumes it, reusing its plan, reflections and finished tasks; `fresh` starts over.
    """
    request = as_objective_request(objective, context, config)
    with _reaching_prefect(on_notice):
        from promptdag.flows.plan_execute_reflect import plan_execute_reflect
        from promptdag.flows.resume import fingerprint
        from promptdag.tasks.result_persistence import check_storage, storage_path

        check_storage()
        print_ = fingerprint({"flow": "plan-execute-reflect", "objective": request.objective,
                              "context": request.context, "storage": str(storage_path())})
        result, _ = await _run_to_end(
            plan_execute_reflect, {"objective": request.objective, "context": request.context,
                                   "config": request.config},
            print_, not fresh, on_notice)
    return ObjectiveResult.model_validate(result)


def run_objective(
    objective: ObjectiveRequest | dict[str, Any] | str,
    context: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    fresh: bool = False,
    on_notice: Callable[[str], None] | None = None,
) -> ObjectiveResult:
    """Synchronous `arun_objective`."""
    return asyncio.run(arun_objective(objective, context, config, fresh, on_notice))
