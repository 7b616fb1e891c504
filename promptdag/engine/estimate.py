"""How long a workflow should take: the list schedule of its DAG with per-model latencies.

The estimate applies the scheduler's own rule (a ready set; higher priority, then declaration
order; `breadth` slots; a task starts the instant its last dependency ends) with zero overhead,
as an exact discrete-event simulation, to a latency per task. It reports the makespan at the
configured breadth, the sequential sum (one task at a time) and the speedup between them.

A task's latency comes, first match wins, from:

1. the median duration of its model's past task runs (`history`: see
   `flows/latency_history.py`, read from Prefect's API only where one is reachable);
2. the task's `latency_hint_s`, else the config's;
3. the simulated model's own `latency_s` option (it sleeps exactly that long);
4. the provider's default in `DEFAULT_LATENCY_S`.

Pure: no Prefect, no network. The benchmarks' ideal schedule (`benchmarks/schedules.py`) is
this simulation too.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from promptdag.spec.fan_out import DEFAULT_ASSUMED_ITEMS
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import TaskSpec, WorkflowSpec

# Seconds per call when nothing better is known: typical end-to-end latencies of a
# few-hundred-token answer (measured orders of magnitude, not promises).
DEFAULT_LATENCY_S: dict[str, float] = {
    "simulated": 0.0,  # its `latency_s` option, 0 unless set
    "openai": 6.0,
    "anthropic": 8.0,
}
UNKNOWN_PROVIDER_LATENCY_S = 10.0

Source = Literal["history", "hint", "option", "default"]


def list_schedule(
    names: Sequence[str],
    depends_on: Mapping[str, Sequence[str]],
    latency: Mapping[str, float],
    breadth: int,
    priority: Mapping[str, int] | None = None,
) -> tuple[float, dict[str, float]]:
    """The makespan (and each task's start) of the zero-overhead ready-set list schedule.

    Tasks ending at the same instant release their dependents before the free slots are
    refilled, so ties never depend on event order.

    Args:
        names: the tasks in declaration order (the tie-break after priority).
        depends_on: each task's dependencies (all of them among `names`).
        latency: seconds each task takes.
        breadth: slots: at most this many tasks run at once.
        priority: higher runs first among ready tasks (default: all equal).
    """
    rank = priority or {}
    index = {name: i for i, name in enumerate(names)}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in depends_on[name]:
            dependents[dep].append(name)
    waiting = {name: len(depends_on[name]) for name in names}
    ready = [(-rank.get(n, 0), index[n], n) for n in names if not waiting[n]]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []  # (finish time, index, name)
    start: dict[str, float] = {}
    now = 0.0
    while ready or running:
        while ready and len(running) < breadth:
            _, i, name = heapq.heappop(ready)
            start[name] = now
            heapq.heappush(running, (now + latency[name], i, name))
        now = running[0][0]
        while running and running[0][0] <= now:
            _, _, name = heapq.heappop(running)
            for child in dependents[name]:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(ready, (-rank.get(child, 0), index[child], child))
    return now, start


class ModelLatency(BaseModel):
    """The latency used for one model, and where it came from."""

    model: str
    seconds: float
    source: Source
    samples: int = Field(0, description="Past task runs behind a `history` figure.")


class Estimate(BaseModel):
    """The estimated time of a workflow (or a plan) at its breadth."""

    breadth: int
    makespan_seconds: float = Field(..., description="The list schedule at `breadth`.")
    sequential_seconds: float = Field(..., description="Every task one after another.")
    speedup: float = Field(..., description="sequential / makespan (1.0 when both are 0).")
    critical_path_seconds: float = Field(..., description="No breadth can beat it.")
    models: list[ModelLatency] = Field(default_factory=list)
    assumed_items: int | None = Field(
        None, description="Items assumed per fan-out (a workflow with `for_each` tasks)."
    )

    def line(self) -> str:
        """`estimated time: 12.0 s at breadth 3 (sequential 30.0 s, 2.5x speedup)`, and the
        items assumed per fan-out when there are fan-outs."""
        assumed = (f", assuming {self.assumed_items} items per fan-out (--items N)"
                   if self.assumed_items is not None else "")
        return (f"estimated time: {_duration(self.makespan_seconds)} at breadth {self.breadth} "
                f"(sequential {_duration(self.sequential_seconds)}, {self.speedup:.1f}x speedup)"
                f"{assumed}")

    def sources(self) -> str:
        """`latency per call: openai:gpt-4o-mini 6.0 s (default), simulated 0.5 s (option)`."""
        parts = [f"{m.model} {_duration(m.seconds)} ({m.source}"
                 + (f", median of {m.samples} runs)" if m.source == "history" else ")")
                 for m in self.models]
        return "latency per call: " + ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def task_model(task: TaskSpec, spec: WorkflowSpec) -> str:
    """The model a task calls first (its own, else the config's)."""
    model = task.model if task.model is not None else spec.config.model
    return model if isinstance(model, str) else model[0]


def task_latency(
    task: TaskSpec, spec: WorkflowSpec, history: Mapping[str, tuple[float, int]] | None = None
) -> ModelLatency:
    """One call's latency for `task` (see the module's order of sources)."""
    model = task_model(task, spec)
    if history and model in history:
        seconds, samples = history[model]
        return ModelLatency(model=model, seconds=seconds, source="history", samples=samples)
    hint = task.latency_hint_s if task.latency_hint_s is not None else spec.config.latency_hint_s
    if hint is not None:
        return ModelLatency(model=model, seconds=hint, source="hint")
    provider = model.partition(":")[0].strip()
    options = {**spec.config.model_options, **task.model_options}
    if provider == "simulated" and options.get("latency_s") is not None:
        return ModelLatency(model=model, seconds=float(options["latency_s"]), source="option")
    seconds = DEFAULT_LATENCY_S.get(provider, UNKNOWN_PROVIDER_LATENCY_S)
    return ModelLatency(model=model, seconds=seconds, source="default")


def estimate(
    spec: WorkflowSpec,
    graph: WorkflowGraph,
    history: Mapping[str, tuple[float, int]] | None = None,
    breadth: int | None = None,
    items: int = DEFAULT_ASSUMED_ITEMS,
) -> Estimate:
    """The estimated makespan of `spec` at `breadth` (default: its config's).

    A sub-workflow task counts as one call of its parent's model: its own DAG is not expanded.
    A fan-out counts as `items` calls side by side (how many items a model will return is
    known only at run time; the estimate says what it assumed).

    Args:
        spec: the workflow.
        graph: its validated graph (`build_graph` or `validate_spec`).
        history: model -> (median seconds, samples) from past runs, if known.
        breadth: slots to simulate (default `spec.config.breadth`).
        items: items assumed per fan-out (`promptdag validate --items N`).
    """
    slots = breadth or spec.config.breadth
    per_task = {t.name: task_latency(t, spec, history) for t in spec.tasks}
    latency = {name: found.seconds for name, found in per_task.items()}
    names, depends_on = list(graph.names), dict(graph.depends_on)
    priority = dict(graph.priority)
    for fan_out in graph.fan_outs:  # `items` instances, then the fan-out joins them at once
        instances = [f"{fan_out}[{i}]" for i in range(items)]
        for instance in instances:
            latency[instance] = latency[fan_out]
            depends_on[instance] = graph.depends_on[fan_out]
            priority[instance] = graph.priority[fan_out]
        latency[fan_out] = 0.0
        depends_on[fan_out] = tuple(instances)
        names[names.index(fan_out):names.index(fan_out)] = instances
    makespan, _ = list_schedule(names, depends_on, latency, slots, priority)
    sequential = sum(latency.values())
    if graph.fan_outs:  # the longest chain: the schedule with a slot for every task
        critical, _ = list_schedule(names, depends_on, latency, len(names), priority)
    else:
        _, critical = graph.critical_path(latency) if latency else ([], 0.0)
    models: dict[tuple[str, float, str], ModelLatency] = {}
    for found in per_task.values():  # one entry per model and latency (options may differ)
        models.setdefault((found.model, found.seconds, found.source), found)
    return Estimate(
        breadth=slots,
        makespan_seconds=round(makespan, 6),
        sequential_seconds=round(sequential, 6),
        speedup=round(sequential / makespan, 3) if makespan > 0 else 1.0,
        critical_path_seconds=round(critical, 6),
        models=list(models.values()),
        assumed_items=items if graph.fan_outs else None,
    )
