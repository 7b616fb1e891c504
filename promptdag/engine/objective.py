"""Plan-execute-reflect data: the request, the plan, the reflection and the result.

Pure models: the planner and reflector return them as structured output, the flow turns a plan
into a `WorkflowSpec` and validates it with the same graph code as user specs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptdag.engine.estimate import Estimate
from promptdag.engine.results import WorkflowResult
from promptdag.errors import SpecError
from promptdag.llm.base import Usage
from promptdag.spec.models import FailureMode, ModelRef, WorkflowSpec, parse_spec
from promptdag.spec.presets import Preset, apply_preset
from promptdag.spec.template import carry_inputs
from promptdag.spec.validation import validate_spec

TOKENS_PER_PLANNED_TASK = 96
"""Output tokens a planned task's JSON takes, about (a name, a one-sentence prompt, a few
dependencies): what `ObjectiveConfig.structured_tokens` leaves a plan when `max_tokens` is low."""

StopReason = Literal[
    "complete", "depth_reached", "reflection_failed", "failed", "rejected", "budget"
]


class PlannedTask(BaseModel):
    """One step the planner (or reflector) wants run."""

    name: str = Field(..., description="Short unique name, e.g. 'Research diagnostics'.")
    prompt: str = Field(..., description="A self-contained instruction for one LLM call.")
    depends_on: list[str] | None = Field(
        None,
        description="Names of tasks whose results this task needs (earlier rounds included); "
        "[] for none. Omit only if unknown: dependencies are then inferred.",
    )


class Plan(BaseModel):
    """A DAG of tasks for one round."""

    tasks: list[PlannedTask] = Field(..., min_length=1, description="The tasks to run.")


class Reflection(BaseModel):
    """The reflector's verdict on a round."""

    complete: bool = Field(..., description="True when the results answer the objective.")
    critique: str = Field("", description="What is good, missing or wrong, in a few lines.")
    follow_up_tasks: list[PlannedTask] = Field(
        default_factory=list, description="New tasks to run next round when not complete."
    )


class ObjectiveConfig(BaseModel):
    """How an objective is pursued; the seed's `config` ({breadth, depth}) loads as it is."""

    model_config = ConfigDict(extra="forbid")

    breadth: int = Field(3, ge=1, le=1024, description="Max tasks running at once.")
    depth: int = Field(3, ge=1, le=20, description="Max plan/reflect rounds.")
    max_tasks: int = Field(12, ge=1, le=100, description="Max tasks the planner may add a round.")
    model: ModelRef = Field("simulated", description="Default model for every role.")
    planner_model: str | None = Field(None, description="Model that plans (default: model).")
    reflector_model: str | None = Field(None, description="Model that reflects.")
    synthesiser_model: str | None = Field(None, description="Model that writes the answer.")
    model_options: dict[str, Any] = Field(default_factory=dict, description="Provider options.")
    timeout_seconds: float = Field(300, gt=0, le=86_400, description="Per-task timeout.")
    max_retries: int = Field(3, ge=0, le=20, description="Retries per task.")
    retry_backoff_seconds: float = Field(1.0, ge=0, le=600)
    failure_mode: FailureMode = "continue"
    infer_dependencies: bool = Field(
        True, description="Infer dependencies of planned tasks that come without them."
    )
    preset: Preset | None = Field(
        None,
        description="speed | balanced | reliability | cost: sets breadth, retries, timeouts, "
        "failure mode (and for cost, cheaper planner and reflector models) as in the "
        "presets table of docs/guide.md; a field set here wins.",
    )
    review: bool = Field(
        False,
        description="Pause after planning (and after a reflection that adds tasks) until a "
        "person approves, edits or rejects the plan: in the Prefect UI's Resume form, or with "
        "`promptdag approve RUN` / `promptdag reject RUN`.",
    )
    review_timeout_seconds: float = Field(
        3600, ge=1, le=30 * 86_400,
        description="A review nobody answers within this many seconds ends the run: "
        "failed, stop_reason rejected (a deployment run: Prefect marks it Failed).",
    )
    max_cost_usd: float | None = Field(
        None, ge=0, description="Budget of the whole objective in USD, every round and role "
        "included: a call that could pass it does not start (stop_reason budget).")
    max_total_tokens: int | None = Field(
        None, ge=1, description="Budget of the whole objective in tokens, every round and role "
        "included.")
    latency_hint_s: float | None = Field(
        None, ge=0, le=86_400, description="Seconds a task's call takes, for the plan's "
        "estimate (default: past runs' median, else the provider's typical latency).",
    )
    stream_plan: bool = Field(
        True,
        description="Read the planner's answer as it streams and start each planned task as "
        "soon as it is written and its dependencies are done; false: wait for the whole plan. "
        "Review mode always waits for the whole plan.",
    )
    max_tokens: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Output-token limit of every call (tasks and every role); a plan or a "
        "reflection gets at least enough for max_tasks tasks. Default: the model's option, "
        "else PROMPTDAG_DEFAULT_MAX_TOKENS.",
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Sampling temperature of every call (default: the model's)."
    )

    @model_validator(mode="after")
    def _apply_preset(self) -> ObjectiveConfig:
        apply_preset(self)
        return self

    @model_validator(mode="after")
    def _apply_limits(self) -> ObjectiveConfig:
        """`max_tokens` and `temperature` go to every call as model options (over the shared
        `model_options`), so tasks and roles alike are held to them."""
        given = {k: getattr(self, k) for k in ("max_tokens", "temperature")
                 if getattr(self, k) is not None}
        if given:
            self.model_options = {**self.model_options, **given}
        return self

    def structured_tokens(self) -> int | None:
        """Room a plan or a reflection gets whatever `max_tokens` says: with no limit set, the
        roles' default floor; with one, enough for `max_tasks` short tasks, so a small limit
        keeps planning short too (None: the roles' default)."""
        if self.max_tokens is None:
            return None
        return max(self.max_tokens, TOKENS_PER_PLANNED_TASK * self.max_tasks + 32)

    def role_model(self, role: Literal["planner", "reflector", "synthesiser"]) -> str:
        chosen = getattr(self, f"{role}_model")
        if chosen:
            return str(chosen)
        return self.model if isinstance(self.model, str) else self.model[0]

    def models(self) -> list[str]:
        """Every model the objective may call: each role's and the tasks' chain, sorted."""
        used = {self.role_model(role) for role in  # type: ignore[arg-type]
                ("planner", "reflector", "synthesiser")}
        return sorted(used | ({self.model} if isinstance(self.model, str) else set(self.model)))


class ObjectiveRequest(BaseModel):
    """The seed API's `POST /workflows/plan-execute` body."""

    model_config = ConfigDict(extra="forbid")

    objective: str = Field(..., min_length=1, description="What the user wants done.")
    context: dict[str, Any] = Field(default_factory=dict, description="e.g. focus_areas.")
    config: ObjectiveConfig = Field(default_factory=ObjectiveConfig)


class RoundResult(BaseModel):
    round: int
    plan: Plan
    result: WorkflowResult | None = None
    reflection: Reflection | None = None
    error: str | None = None
    estimate: Estimate | None = Field(
        None, description="The round's plan estimated before it ran (promptdag/engine/estimate.py)."
    )
    edited: bool = Field(False, description="A reviewer changed the plan before it ran.")


class ObjectiveResult(BaseModel):
    """What `promptdag objective --json` prints and the objective flow returns."""

    objective: str
    status: Literal["completed", "failed"]
    stop_reason: StopReason
    rounds: list[RoundResult]
    final_answer: str | None = None
    error: str | None = None
    flow_run_id: str | None = None
    elapsed_seconds: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    plan_streamed: bool = Field(
        False, description="Round 1's tasks started while the planner was still writing."
    )
    planning_started_at: datetime | None = Field(None, description="The planner was asked.")
    planning_finished_at: datetime | None = Field(
        None, description="The planner's whole answer was in (round 1)."
    )
    first_task_started_at: datetime | None = Field(
        None, description="Round 1's first task was dispatched; before planning_finished_at "
        "when the plan streamed.",
    )
    plan_rejected: list[str] = Field(
        default_factory=list,
        description="Lines of a streamed plan that were dropped, each with the reason.",
    )


def plan_to_spec(
    tasks: list[PlannedTask],
    name: str,
    config: ObjectiveConfig,
    earlier: dict[str, str],
) -> WorkflowSpec:
    """A round's tasks as a workflow spec for the one scheduler.

    Dependencies on tasks of earlier rounds become context values (their results, inserted
    under "Results of earlier rounds"), since those tasks are not re-run.
    """
    planned = {t.name for t in tasks}
    specs: list[dict[str, Any]] = []
    for task in tasks:
        entry: dict[str, Any] = {"name": task.name, "prompt": task.prompt}
        if task.depends_on is not None:
            carried = [d for d in task.depends_on if d in earlier and d not in planned]
            entry["depends_on"] = [d for d in task.depends_on if d not in carried]
            if carried:
                entry["prompt"], entry["context"] = carry_inputs(
                    task.prompt, {}, {d: earlier[d] for d in carried},
                    "Results of earlier rounds", planned,
                )
        specs.append(entry)
    return parse_spec(
        {
            "name": name[:200],
            "config": {
                "breadth": config.breadth,
                "timeout_seconds": config.timeout_seconds,
                "max_retries": config.max_retries,
                "retry_backoff_seconds": config.retry_backoff_seconds,
                "failure_mode": config.failure_mode,
                "model": config.model,
                "model_options": config.model_options,
                **({"latency_hint_s": config.latency_hint_s}
                   if config.latency_hint_s is not None else {}),
            },
            "tasks": specs,
        },
        source="plan",
    )


def accept_streamed(
    task: PlannedTask,
    accepted: list[PlannedTask],
    config: ObjectiveConfig,
    earlier: dict[str, str],
) -> PlannedTask | str:
    """One task of a streamed plan, made runnable like `repair_plan` makes a whole plan (a
    name made unique, dependencies on tasks not written before it dropped: a streamed task
    may only wait for earlier lines), then checked with the tasks accepted before it; the
    reason when it cannot run (past `max_tasks`, an invalid prompt)."""
    if len(accepted) >= config.max_tasks:
        return f"task {task.name!r} dropped: the plan is past max_tasks ({config.max_tasks})"
    task = unique_names([task], {t.name for t in accepted} | set(earlier))[0]
    if task.depends_on is not None:
        known = {t.name for t in accepted} | set(earlier)
        task = task.model_copy(update={"depends_on": [d for d in task.depends_on if d in known]})
    try:
        check_plan([*accepted, task], config, earlier)
    except SpecError as exc:
        return f"task {task.name!r} dropped: {exc}"
    return task


def check_plan(
    tasks: list[PlannedTask], config: ObjectiveConfig, earlier: dict[str, str]
) -> WorkflowSpec:
    """Validate planned tasks like a user spec; raise SpecError with a message a planner can fix."""
    if len(tasks) > config.max_tasks:
        raise SpecError(f"the plan has {len(tasks)} tasks; at most {config.max_tasks} are allowed")
    reused = [t.name for t in tasks if t.name in earlier]
    if reused:
        raise SpecError(f"task name {reused[0]!r} is already used by an earlier round; rename it")
    spec = plan_to_spec(tasks, "plan", config, earlier)
    validate_spec(spec)
    return spec


def unique_names(tasks: list[PlannedTask], taken: set[str] | dict[str, str]) -> list[PlannedTask]:
    """Planned tasks with every name unique: a name already used (by an earlier round, or
    earlier in the same list) gets a number, `Energy Efficiency (2)`, instead of failing the
    objective. Dependencies follow: within the list, a reused name means the task of this
    list that carried it (the planner's own task), else the earlier round's. A task listed
    in its own `depends_on`, or a dependency listed twice, is dropped (not fatal either)."""
    used = set(taken)
    renamed: dict[str, str] = {}
    out: list[PlannedTask] = []
    for task in tasks:
        name = task.name
        if name in used:
            number = 2
            while f"{name} ({number})" in used:
                number += 1
            name = f"{name} ({number})"
        used.add(name)
        renamed.setdefault(task.name, name)
        out.append(task if name == task.name else task.model_copy(update={"name": name}))
    fixed = []
    for t in out:
        if t.depends_on is not None:
            deps = [d if renamed.get(d, d) == t.name else renamed.get(d, d) for d in t.depends_on]
            # a task naming itself (small models do) means nothing more: not a failed plan
            t = t.model_copy(update={"depends_on": list(dict.fromkeys(
                d for d in deps if d != t.name))})
        fixed.append(t)
    return fixed


NAME_CHARS = 100
"""A planned task's longest name. The only string bound in the schemas sent to servers: a
server that compiles a schema into a grammar expands each `maxLength` into that many rules,
and llama-cpp-python's compiler gives up (its process may die) on bounds of a thousand or
more. Prompts and critiques are bounded by the answer's token limit instead."""


def _bounded_tasks(schema: dict[str, Any], max_tasks: int) -> None:
    task = schema["$defs"]["PlannedTask"]["properties"]
    task["name"]["maxLength"] = NAME_CHARS
    for option in task["depends_on"].get("anyOf", [task["depends_on"]]):
        if option.get("type") == "array":
            option["maxItems"] = max_tasks


def plan_schema(max_tasks: int) -> dict[str, Any]:
    """The planner's schema with bounds: at most `max_tasks` tasks, short names. Servers that
    constrain decoding by the schema (llama.cpp, vLLM) then stop a small model that would
    otherwise list tasks until the token limit; the bounds stay small enough for every
    server's grammar compiler (see `NAME_CHARS`)."""
    schema = Plan.model_json_schema()
    schema["properties"]["tasks"]["maxItems"] = max_tasks
    _bounded_tasks(schema, max_tasks)
    task = schema["$defs"]["PlannedTask"]
    # Every task says what it waits for ([] for nothing), so a streamed task can start as
    # soon as it is written; a small model left the choice omits it, and its tasks then wait
    # for the whole plan's dependency inference.
    task["properties"]["depends_on"] = {
        "type": "array", "items": {"type": "string"}, "maxItems": max_tasks,
        "description": "Names of tasks listed before this one whose results it needs; [] for "
        "none.",
    }
    task["required"] = ["name", "prompt", "depends_on"]
    return schema


def reflection_schema(max_tasks: int) -> dict[str, Any]:
    """The reflector's schema, bounded like the planner's (see `plan_schema`)."""
    schema = Reflection.model_json_schema()
    schema["properties"]["follow_up_tasks"]["maxItems"] = max_tasks
    _bounded_tasks(schema, max_tasks)
    return schema


def repair_plan(
    tasks: list[PlannedTask], earlier: set[str] | dict[str, str]
) -> list[PlannedTask]:
    """What a planner or reflector returned, made runnable where its intent is plain, so a
    small model's slips do not end the objective: names made unique (`unique_names`), a
    dependency on a task that exists nowhere (neither in this plan nor in an earlier round)
    dropped, and, only when the dependencies form a cycle, every dependency on a task listed
    later dropped (the list's order is the plan's). A plan that is valid is returned as is."""
    tasks = unique_names(tasks, earlier)
    known = {t.name for t in tasks} | set(earlier)
    tasks = [t if t.depends_on is None else t.model_copy(
        update={"depends_on": [d for d in t.depends_on if d in known]}) for t in tasks]
    if _has_cycle(tasks):
        position = {t.name: i for i, t in enumerate(tasks)}
        tasks = [t if t.depends_on is None else t.model_copy(update={"depends_on": [
            d for d in t.depends_on if position.get(d, -1) < position[t.name]]}) for t in tasks]
    return tasks


def _has_cycle(tasks: list[PlannedTask]) -> bool:
    deps = {t.name: [d for d in (t.depends_on or []) if d in {u.name for u in tasks}]
            for t in tasks}
    state: dict[str, int] = {}

    def visit(name: str) -> bool:
        state[name] = 1
        for dep in deps[name]:
            if state.get(dep) == 1 or (dep not in state and visit(dep)):
                return True
        state[name] = 2
        return False

    return any(name not in state and visit(name) for name in deps)
