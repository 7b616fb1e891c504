"""What a run produces: per-task results, the workflow result, its summary (the result JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from promptdag.llm.base import Usage

TaskStatus = Literal["completed", "failed", "skipped", "cancelled"]


class TaskResult(BaseModel):
    """The outcome of one workflow task."""

    name: str
    status: TaskStatus
    depends_on: list[str] = Field(default_factory=list)
    attempts: int = Field(0, description="Model calls made for this task in this run.")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    model: str | None = Field(None, description="The model that answered (or was tried last).")
    fallback_errors: dict[str, str] = Field(
        default_factory=dict,
        description="Models of the chain tried before the one that answered, with their errors.",
    )
    prompt: str | None = Field(None, description="The rendered prompt the model saw.")
    result: str | None = None
    error: str | None = None
    reused: bool = Field(
        False, description="Taken instead of calling the model again: from the same run being "
        "resumed, or from the cache (`cache: true`). Its usage is then zero; see saved_usage."
    )
    saved_usage: Usage | None = Field(
        None, description="A reused task: the usage of the call it did not make again."
    )
    saved_calls: int = Field(0, description="A reused task: the calls it did not make again.")
    warning: str | None = Field(
        None, description="Something to know although the task completed, e.g. its result "
        "could not be saved (a resume would call the model again)."
    )
    skip_reason: Literal["condition", "upstream_failed"] | None = Field(
        None, description="Why a skipped task did not run: a branch not taken, or a failure."
    )
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = Field(
        None, description="Why the model stopped: stop, length (the token limit), ..."
    )
    truncated: bool = Field(
        False, description="The answer was cut at the token limit (finish_reason: length)."
    )
    output: dict[str, Any] | None = Field(
        None, description="The structured result, for tasks with an output_schema."
    )
    workflow: WorkflowResult | None = Field(
        None, description="The sub-workflow's own result, for workflow tasks."
    )
    fan_out: str | None = Field(
        None, description="An instance of a fan-out: the `for_each` task it belongs to."
    )
    item: Any = Field(None, description="An instance of a fan-out: its item.")
    index: int | None = Field(
        None, description="An instance of a fan-out: its item's position (from 0)."
    )


class Summary(BaseModel):
    total_tasks: int
    completed_count: int
    failed_count: int
    skipped_count: int
    cancelled_count: int = 0
    success_rate: float
    reused_count: int = Field(0, description="Tasks whose result was reused, not asked again.")
    retried_count: int = Field(0, description="Calls that were retries (attempts after a first).")
    truncated_count: int = Field(0, description="Answers cut at the token limit.")
    unsaved_count: int = Field(
        0, description="Completed tasks whose result could not be saved (see their warning)."
    )
    fan_out_count: int = Field(
        0, description="Tasks that were instances of fan-outs (included in total_tasks)."
    )


class RowResult(BaseModel):
    """One row of a batch run (`--data`): one line of the `--output` JSONL."""

    id: str = Field(..., description="The row's `id` field, else its index.")
    index: int = Field(..., description="The row's position in the data (0-based).")
    status: Literal["completed", "failed"]
    results: dict[str, str | None] = Field(
        default_factory=dict, description="Results of the row's final tasks, by task name."
    )
    outputs: dict[str, Any] = Field(
        default_factory=dict, description="Structured results of final tasks that have one."
    )
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class WorkflowResult(BaseModel):
    """The result JSON of DESIGN.md: what `promptdag run --json` prints and the flow returns.

    `status`, `summary`, `usage` and `saved_usage` are derived from `tasks` when not given (a
    run's own calls beyond its tasks, e.g. dependency inference, go in `overhead_usage`);
    they stay in the JSON, and a result read back keeps what it says.
    """

    name: str
    status: Literal["completed", "failed"]
    flow_run_id: str | None = None
    started_at: datetime
    finished_at: datetime
    elapsed_seconds: float
    tasks: list[TaskResult]
    summary: Summary
    usage: Usage = Field(default_factory=Usage)
    saved_usage: Usage = Field(
        default_factory=Usage, description="What reused tasks did not spend again."
    )
    warning: str | None = Field(
        None, description="Something went wrong around the run, e.g. the Prefect API went "
        "away before the run could record its end (this result then comes from memory)."
    )
    rows: list[RowResult] | None = Field(
        None, description="A batch run (--data): each row's outcome, in data order (the "
        "first 1,000 rows; a larger batch's rows are in `rows_file`)."
    )
    rows_file: str | None = Field(
        None, description="A batch run: the row log, every row's outcome as a JSON line, in "
        "the result storage (what `promptdag result RUN --output FILE` reads)."
    )
    stop_reason: Literal["budget"] | None = Field(
        None, description="Why the run stopped before its end: `budget`, a call could have "
        "passed max_cost_usd or max_total_tokens (of the run or of a row); see `budget`."
    )
    budget: str | None = Field(None, description="The budget that stopped a call, in words.")

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            return data
        tasks = [t if isinstance(t, TaskResult) else TaskResult.model_validate(t)
                 for t in data["tasks"]]
        derived: dict[str, Any] = {"tasks": tasks}
        if "status" not in data:
            derived["status"] = workflow_status(tasks)
        if "summary" not in data:
            derived["summary"] = summarise(tasks)
        if "usage" not in data:
            derived["usage"] = total_usage(tasks) + Usage.model_validate(
                data.get("overhead_usage") or {})
        if "saved_usage" not in data:
            derived["saved_usage"] = saved_usage(tasks)
        return {k: v for k, v in {**data, **derived}.items() if k != "overhead_usage"}

    def task(self, name: str) -> TaskResult:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    @property
    def results(self) -> dict[str, str | None]:
        """Each task's result text by name."""
        return {t.name: t.result for t in self.tasks}


TaskResult.model_rebuild()


def workflow_status(tasks: list[TaskResult]) -> Literal["completed", "failed"]:
    """Completed when nothing failed: every task completed, or was a branch not taken."""
    ok = all(t.status == "completed" or (t.status == "skipped" and t.skip_reason == "condition")
             for t in tasks)
    return "completed" if ok else "failed"


def summarise(tasks: list[TaskResult]) -> Summary:
    total = len(tasks)
    count = {
        status: sum(t.status == status for t in tasks)
        for status in ("completed", "failed", "skipped", "cancelled")
    }
    return Summary(
        total_tasks=total,
        completed_count=count["completed"],
        failed_count=count["failed"],
        skipped_count=count["skipped"],
        cancelled_count=count["cancelled"],
        success_rate=round(count["completed"] / total, 4) if total else 1.0,
        reused_count=sum(t.reused for t in tasks),
        retried_count=sum(max(0, t.attempts - 1 - len(t.fallback_errors)) for t in tasks),
        truncated_count=sum(t.truncated for t in tasks),
        unsaved_count=sum(t.warning is not None and t.status == "completed" for t in tasks),
        fan_out_count=sum(t.fan_out is not None for t in tasks),
    )


def total_usage(tasks: list[TaskResult]) -> Usage:
    usage = Usage()
    for task in tasks:
        usage = usage + task.usage
    return usage


def saved_usage(tasks: list[TaskResult]) -> Usage:
    """What reused tasks (and reused tasks of sub-workflows) did not spend again."""
    usage = Usage()
    for task in tasks:
        if task.saved_usage is not None:
            usage = usage + task.saved_usage
        if task.workflow is not None:
            usage = usage + task.workflow.saved_usage
    return usage
