"""The workflow spec: what a user writes (YAML or JSON), as typed pydantic models.

Field names follow the seed API (`POST /api/v1/workflows/`) so its request bodies load unchanged.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from promptdag.errors import SpecError
from promptdag.spec.input_limits import load_yaml, measure, read_text
from promptdag.spec.presets import Preset, apply_preset

FailureMode = Literal["fail_fast", "skip_dependents", "continue"]
# `for_each`: exactly one `{{ Task.field }}` reference (the field path after the first dot)
FOR_EACH = re.compile(r"\s*\{\{\s*([^{}]*?\.[^{}]*?)\s*\}\}\s*")


class TaskType(str, Enum):
    """How a task without explicit `depends_on` is staged (see implied dependencies)."""

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"
    HYBRID = "hybrid"


class Priority(str, Enum):
    """Among tasks that are ready at the same moment, higher priority starts first."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}

ModelRef = str | list[str]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or a text like `90`, `30m`, `2h`, `1d`; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("give a duration: seconds, or a number with s, m, h or d (e.g. 1d)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        unit = _UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit else text
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a duration: give seconds, or a number with s, m, h or d "
                "(e.g. 30m, 2h, 1d)"
            ) from None
    if not 0 < seconds <= 366 * 86_400:
        raise ValueError(f"{value!r}: a duration must be more than 0 and at most 366 days")
    return seconds


CacheExpiration = Annotated[
    float | None, BeforeValidator(parse_duration, json_schema_input_type=float | str | None)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=False)


class WorkflowConfig(_Strict):
    """Settings for a whole workflow run; each task may override the per-task ones."""

    breadth: int = Field(3, ge=1, le=1024, description="Max tasks running at once.")
    depth: int = Field(
        5, ge=1, le=20,
        description="Max plan-execute-reflect rounds: read by `promptdag objective`; a workflow "
        "run has no rounds and ignores it (accepted so seed API bodies load unchanged).",
    )
    timeout_seconds: float = Field(
        300, gt=0, le=86_400, description="Per-task timeout (default for every task)."
    )
    enable_retry: bool = Field(True, description="Retry retryable failures (rate limits, 5xx).")
    max_retries: int = Field(3, ge=0, le=20, description="Default retries per task.")
    retry_backoff_seconds: float = Field(
        1.0, ge=0, le=600, description="First retry delay; doubles each retry, with jitter."
    )
    collect_intermediate: bool = Field(
        True, description="Keep rendered prompts and per-task results in the result."
    )
    failure_mode: FailureMode = Field(
        "skip_dependents", description="fail_fast | skip_dependents | continue."
    )
    model: ModelRef = Field(
        "simulated", description='Default model for every task, as "provider:model".'
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="Provider options for every task."
    )
    fail_on_truncation: bool = Field(
        False,
        description="An answer cut at the token limit (finish_reason: length) fails its task "
        "instead of completing marked `truncated`.",
    )
    max_cost_usd: float | None = Field(
        None, ge=0, description="Budget of the run in USD: a call that could pass it does not "
        "start, and the run ends with stop_reason budget (docs/capacity.md).")
    max_total_tokens: int | None = Field(
        None, ge=1, description="Budget of the run in tokens (prompt + answer, each call counted "
        "at its prompt estimate plus max_tokens until its usage is known).")
    row_max_cost_usd: float | None = Field(
        None, ge=0, description="A batch run (--data): the budget of each row in USD.")
    row_max_total_tokens: int | None = Field(
        None, ge=1, description="A batch run (--data): the budget of each row in tokens.")
    reuse_results: bool = Field(
        True,
        description="Resume: a run of this spec, when the latest run of it did not complete, "
        "reuses that run's finished tasks; false starts over (--fresh).",
    )
    cache: bool = Field(
        False,
        description="Answer identical requests once across runs (a cache shared by every run "
        "of every spec); off by default: each new run calls the models afresh.",
    )
    cache_expiration: CacheExpiration = Field(
        None, description="How long cached answers last: seconds, or 30m, 2h, 1d (none: ever)."
    )
    workflow_timeout_seconds: float | None = Field(
        None, gt=0, le=7 * 86_400,
        description="Overall limit for a run: what has not finished is cancelled, finished "
        "results are kept (and reused on resume).",
    )
    infer_dependencies: bool = Field(
        False,
        description="Let the model infer dependencies of tasks without depends_on (instead of "
        "stages); a heuristic decides if the model fails.",
    )
    runner: Literal["local", "dask"] = Field(
        "local", description="Where task runs execute: local (the flow's event loop) or dask."
    )
    runner_options: dict[str, Any] = Field(
        default_factory=dict,
        description='dask: {address: "tcp://host:8786"} or {n_workers: 2} for a local cluster.',
    )
    preset: Preset | None = Field(
        None,
        description="speed | balanced | reliability | cost: sets breadth, retries, timeouts and "
        "failure mode (and for cost, caching) as in the presets table of docs/guide.md; a "
        "field set here wins.",
    )
    batch_api: bool = Field(
        False,
        description="With --data: send the rows' model calls through the provider's batch API "
        "(OpenAI Batch, Anthropic Message Batches) at its discount, one batch per DAG level; "
        "answers may take up to 24 h (docs/batch-api.md).",
    )
    latency_hint_s: float | None = Field(
        None, ge=0, le=86_400,
        description="Seconds a call takes, for the estimate `promptdag validate` prints "
        "(default: past runs' median, else the provider's typical latency).",
    )

    @model_validator(mode="after")
    def _apply_preset(self) -> WorkflowConfig:
        apply_preset(self, workflow=True)
        return self


class TaskSpec(_Strict):
    """One prompt of the workflow."""

    name: str = Field(..., min_length=1, max_length=200, description="Unique task name.")
    prompt: str = Field(
        "", description="The prompt; `{{ Task Name }}` inserts that result (none for a workflow)."
    )
    description: str | None = Field(None, description="What the task is for (not sent on).")
    task_type: TaskType = Field(TaskType.SEQUENTIAL, description="Staging when implied.")
    priority: Priority = Field(Priority.NORMAL, description="Order among ready tasks.")
    depends_on: list[str] | None = Field(
        None, description="Explicit dependencies; omitted means implied by stages."
    )
    context: dict[str, Any] = Field(default_factory=dict, description="Extra prompt inputs.")
    max_retries: int | None = Field(None, ge=0, le=20, description="Retries (default: config's).")
    timeout_seconds: float | None = Field(
        None, gt=0, le=86_400, description="Timeout of each attempt (default: config's)."
    )
    cache: bool | None = Field(
        None, description="Answer identical requests once across runs (default: the config's)."
    )
    cache_expiration: CacheExpiration = Field(
        None, description="How long this task's cached answers last (default: the config's)."
    )
    model: ModelRef | None = Field(
        None, description='"provider:model", or a list tried in order (default: config\'s).'
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="Provider options, over the config's key by key."
    )
    fail_on_truncation: bool | None = Field(
        None, description="An answer cut at the token limit fails the task (default: config's)."
    )
    latency_hint_s: float | None = Field(
        None, ge=0, le=86_400, description="Seconds a call takes, for estimates (default: "
        "the config's)."
    )
    when: str | None = Field(
        None,
        description="Run only if this condition on upstream results holds, e.g. "
        "\"{{ Assess.label }} == 'complex'\"; otherwise the task is skipped.",
    )
    output_schema: str | dict[str, Any] | None = Field(
        None,
        description="Ask for a structured result: a JSON schema (type: object) or a registered "
        "name (classification, score); fields are then usable as {{ Task.field }}.",
    )
    workflow: WorkflowSpec | str | None = Field(
        None,
        description="Run a whole workflow (inline, or a spec file path) as this task, as a "
        "Prefect subflow with its own breadth.",
    )
    for_each: str | None = Field(
        None,
        description="Fan out: run this task once per item of a list an upstream task returns, "
        "\"{{ Outline.sections }}\" (a list field of its output_schema) or \"{{ Outline.lines "
        "}}\" (the non-empty lines of a text answer); the prompt reads {{ item }}, "
        "{{ item.field }} and {{ index }} (from 0). Dependents get every instance's result in "
        "item order: {{ Task }} as numbered text, {{ Task.outputs }} as a list. No items: the "
        "task is skipped as a branch not taken.",
    )
    max_items: int = Field(
        100, ge=1, le=10_000,
        description="A fan-out over more items than this fails the task (the list is never "
        "cut silently).",
    )

    @model_validator(mode="after")
    def _prompt_or_workflow(self) -> TaskSpec:
        if self.workflow is None and not self.prompt.strip():
            raise ValueError("field 'prompt' is required and must not be empty")
        if self.workflow is not None and self.output_schema is not None:
            raise ValueError("a workflow task cannot have an output_schema")
        if self.for_each is not None:
            if self.workflow is not None:
                raise ValueError("field 'for_each': a workflow task cannot fan out; fan out a "
                                 "prompt task inside the sub-workflow instead")
            if FOR_EACH.fullmatch(self.for_each) is None:
                raise ValueError(
                    "field 'for_each': give one reference to a list, like "
                    "\"{{ Outline.sections }}\" or \"{{ Outline.lines }}\""
                )
        return self

    @field_validator("name")
    @classmethod
    def _name_is_visible(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("task name must not be blank")
        if value != value.strip():
            raise ValueError("task name must not start or end with spaces")
        if any(ch in value for ch in "{}\n\r\t"):
            raise ValueError("task name must not contain braces, tabs or line breaks")
        return value


class WorkflowSpec(_Strict):
    """A named DAG of prompt tasks and the config to run it with."""

    name: str = Field(..., min_length=1, max_length=200, description="Workflow name.")
    description: str | None = Field(None, description="What the workflow is for (shown in the UI).")
    config: WorkflowConfig = Field(
        default_factory=WorkflowConfig, description="How the workflow runs (see `config`)."
    )
    tasks: list[TaskSpec] = Field(..., min_length=1, description="The prompt tasks.")

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)


TaskSpec.model_rebuild()


def _location(loc: tuple[Any, ...], data: Any) -> str:
    """`tasks[2].priority` becomes "task 'Synthesize': field 'priority'" where a name is known."""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        name = None
        if isinstance(data, dict) and isinstance(data.get("tasks"), list):
            items = data["tasks"]
            if loc[1] < len(items) and isinstance(items[loc[1]], dict):
                name = items[loc[1]].get("name")
        who = f"task {name!r}" if isinstance(name, str) and name else f"task #{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        return f"{who}: field {rest!r}" if rest else who
    return "field " + repr(".".join(str(p) for p in loc)) if loc else "spec"


def describe_validation_error(exc: ValidationError, data: Any) -> str:
    """One line for the first problem pydantic found, naming the task and the field."""
    errors = exc.errors()
    first = errors[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; every field: promptdag schema --reference)"
    elif first["type"] == "missing":
        message = "required field is missing"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{_location(tuple(first['loc']), data)}: {message}{more}"


def parse_spec(
    data: Any, source: str = "spec", base: Path | None = None, stack: tuple[Path, ...] = ()
) -> WorkflowSpec:
    """Validate already-parsed data (a dict from YAML/JSON or an API body) into a spec.

    Sub-workflows given as file paths are read (relative to `base`, default the working
    directory) and inlined, so the spec is self-contained when it reaches a flow.
    """
    if isinstance(data, WorkflowSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with 'name' and 'tasks' at the top level")
    measure(data, source)  # bounded before pydantic walks it (shared values count each time)
    data = _inline_workflows(data, base or Path.cwd(), stack)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {describe_validation_error(exc, data)}") from None
    except RecursionError:
        raise SpecError(f"{source}: values are nested too deeply") from None
    return inherit_parent_config(spec)


INHERITED: tuple[str, ...] = ("model", "model_options", "breadth")


def inherit_parent_config(spec: WorkflowSpec) -> WorkflowSpec:
    """The spec with every sub-workflow's unset `INHERITED` fields taken from its parent."""
    if not any(isinstance(t.workflow, WorkflowSpec) for t in spec.tasks):
        return spec
    parent = spec.config
    tasks = []
    for task in spec.tasks:
        if isinstance(task.workflow, WorkflowSpec):
            sub = task.workflow
            update: dict[str, Any] = {}
            for field in INHERITED:
                if field not in parent.model_fields_set:
                    continue
                if field == "model_options":
                    merged = {**parent.model_options, **sub.config.model_options}
                    if merged != sub.config.model_options:
                        update[field] = merged
                elif field not in sub.config.model_fields_set:
                    update[field] = getattr(parent, field)
            if update:
                sub = sub.model_copy(update={"config": sub.config.model_copy(update=update)})
            task = task.model_copy(update={"workflow": inherit_parent_config(sub)})
        tasks.append(task)
    return spec.model_copy(update={"tasks": tasks})


def load_spec(path: str | Path) -> WorkflowSpec:
    """Read a spec file (`.yaml`, `.yml` or `.json`; other names are tried as YAML)."""
    file = Path(path)
    text = read_text(file)  # a regular file of bounded size, or SpecError
    return parse_spec(_parse_text(text, file), str(file), file.parent, (file.resolve(),))


MAX_NESTING = 10


def _inline_workflows(data: dict[str, Any], base: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
    """Replace `workflow: path` by the file's content, recursively; reject cycles across files."""
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not any(
        isinstance(t, dict) and isinstance(t.get("workflow"), (str, dict)) for t in tasks
    ):
        return data
    if len(stack) > MAX_NESTING:
        raise SpecError(f"sub-workflows nested more than {MAX_NESTING} levels deep")
    inlined = []
    for task in tasks:
        if isinstance(task, dict) and isinstance(task.get("workflow"), str):
            path = (base / task["workflow"]).resolve()
            who = f"task {task.get('name')!r}: workflow {task['workflow']!r}"
            if path in stack:
                chain = " -> ".join(p.name for p in (*stack, path))
                raise SpecError(f"{who}: sub-workflow cycle across files: {chain}")
            try:
                text = read_text(path, "sub-workflow")
            except SpecError as exc:
                raise SpecError(f"{who}: {exc}") from None
            sub = _parse_text(text, path)
            if isinstance(sub, dict):
                sub = _inline_workflows(sub, path.parent, (*stack, path))
            task = {**task, "workflow": sub}
        elif isinstance(task, dict) and isinstance(task.get("workflow"), dict):
            task = {**task, "workflow": _inline_workflows(task["workflow"], base, stack)}
        inlined.append(task)
    return {**data, "tasks": inlined}


def _parse_text(text: str, file: Path) -> Any:
    data = _parse_unbounded(text, file)
    if file.suffix.lower() == ".json":  # YAML was bounded while it was parsed
        measure(data, str(file))
    return data


def _parse_unbounded(text: str, file: Path) -> Any:
    if file.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        except RecursionError:
            raise SpecError(f"{file}: invalid JSON: nested too deeply") from None
    try:
        return load_yaml(text, str(file))  # aliases, values and depth bounded while parsing
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise SpecError(f"{file}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{file}: invalid YAML: nested too deeply") from None
