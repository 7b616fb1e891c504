"""Run identity: which earlier results a task may reuse, as Prefect cache keys.

Every finished task's result is persisted under a key made of a *scope* and the workflow's own
data (workflow name, task name, prompt template and context, the upstream results it is rendered
with, the model chain, the options and the output schema):

- **run scope** (the default): the scope is the run's `resume_scope` flow parameter, or else the
  flow run's own id, which is what Prefect's `RUN_ID` policy uses and which stays the same when
  Prefect retries the flow run (the UI's Retry button, `prefect flow-run retry`, `promptdag
  retry`). A new run gets a new id, so it calls the models afresh; a retry or a resume (a run
  started with the old run's scope) reuses only that run's finished tasks. Parent flows pass
  their own scope down to sub-workflows and objective rounds (suffixed, see `child_scope`).
- **shared scope** (`cache: true` on the workflow or the task): identical requests are answered
  once across runs, until the optional `cache_expiration`.

The key leaves out the task function's source (Prefect's DEFAULT policy includes it), so a
promptdag release does not discard a run's finished work. Both policies are `SERIALIZABLE` with a
lock manager (tasks/result_locks.py): two runs that would make the same call in the same scope
make it once; the second waits for the first's result.

Role tasks of the objective flow (planner, reflector, synthesiser, dependency analyser) get
`ROLE_CACHE`: run-scoped, keyed on their inputs without the volatile parts (timings, attempts),
so resuming an objective reuses its plan and reflections instead of asking again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from promptdag.tasks.result_locks import LOCKS

KEY_VERSION = "promptdag-v2"  # bump only if the meaning of a cached result changes
SHARED_SCOPE = "shared"
# Parts of results that differ between a run and its resume without changing what they say.
VOLATILE = frozenset({"started_at", "finished_at", "duration_seconds", "elapsed_seconds",
                      "attempts", "reused", "usage", "saved_usage", "flow_run_id", "warning",
                      "stream_to"})  # a feed's key: new in every run (tasks/feeds.py)


def run_scope(task_ctx: TaskRunContext | None, flow_parameters: dict[str, Any]) -> str:
    """The resume scope of the running flow: its `resume_scope` parameter, else its run id."""
    scope = flow_parameters.get("resume_scope")
    if scope:
        return str(scope)
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return str(task_ctx.task_run.flow_run_id)
    return "no-flow-run"


def child_scope(scope: str, part: str) -> str:
    """The scope a parent passes to one of its subflows (a sub-workflow task, a round)."""
    return f"{scope}/{part}"


def current_scope() -> str:
    """The resume scope of the flow run in progress (for passing it to subflows)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return "no-flow-run"
    scope = (context.parameters or {}).get("resume_scope")
    return str(scope) if scope else str(context.flow_run.id)


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prompt_cache_key(scope: str, job: Any, upstream: Any, outputs: Any) -> str:
    data = job.model_dump(mode="json") if hasattr(job, "model_dump") else job
    payload = {"v": KEY_VERSION, "scope": scope, "job": data, "upstream": upstream or {},
               "outputs": outputs or {}}
    return f"{KEY_VERSION}-{_digest(payload)}"


def stable(value: Any) -> Any:
    """`value` as JSON-able data without the VOLATILE fields, at any depth."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, (list, tuple)):
        return [stable(v) for v in value]
    return value


@dataclass(eq=False)
class PromptPolicy(CachePolicy):
    """`run_prompt`'s key: scope + the workflow's data (see module docstring)."""

    shared: bool = False

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        scope = SHARED_SCOPE if self.shared else run_scope(task_ctx, flow_parameters)
        return prompt_cache_key(scope, inputs.get("job"), inputs.get("upstream"),
                                inputs.get("outputs"))

    def __hash__(self) -> int:  # task options are looked up by value (configured_prompt_task)
        return hash((type(self), self.shared))


@dataclass(eq=False)
class InputsPolicy(CachePolicy):
    """A task's key: run scope + task name + its inputs without volatile parts; `kind` keeps
    the keys of different kinds of task apart (a role's call, a provider batch)."""

    kind: str = "role"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        payload = {"v": KEY_VERSION, "scope": run_scope(task_ctx, flow_parameters),
                   "task": task_ctx.task.name, "inputs": stable(inputs)}
        return f"{KEY_VERSION}-{self.kind}-{_digest(payload)}"

    def __hash__(self) -> int:
        return hash((type(self), self.kind))


PROMPT_CACHE = PromptPolicy(isolation_level="SERIALIZABLE", lock_manager=LOCKS)
SHARED_PROMPT_CACHE = PromptPolicy(shared=True, isolation_level="SERIALIZABLE",
                                   lock_manager=LOCKS)
ROLE_CACHE = InputsPolicy(isolation_level="SERIALIZABLE", lock_manager=LOCKS)
