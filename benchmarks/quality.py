"""Scheduling quality: each shape's makespan under every executor, side by side in one run.

For each shape the real executors run back to back (their order rotated between repeats, the
median kept), so machine noise hits them alike; the exact references need no sleeping.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from benchmarks import references, schedules
from benchmarks.server import LocalServer
from benchmarks.shapes import Plan, Shape

# Real executors, in the order of the table's columns.
REAL = ("stage_barrier", "naive_prefect", "ready_set", "promptdag")


@dataclass
class ShapeResult:
    """One shape's figures: exact references and the medians of the real executors (seconds)."""

    shape: str
    why: str
    tasks: int
    breadth: int
    sequential: float
    lower_bound: float
    ideal: float
    stage_barrier_exact: float
    median: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    server_drain_seconds: float = 0.0

    @property
    def meets_target(self) -> bool:
        """Issue 2's target: promptdag within 10% (+0.25 s) of the zero-overhead ready set."""
        return self.median["promptdag"] <= 1.10 * self.median["ready_set"] + 0.25

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "meets_target": self.meets_target}


def _run_promptdag(shape: Shape) -> float:
    from promptdag.api import arun

    result = asyncio.run(arun(shape.fresh_spec()))
    if result.status != "completed" or any(t.reused for t in result.tasks):
        raise RuntimeError(f"promptdag run of {shape.name!r}: {result.status}, or results reused")
    return result.elapsed_seconds


def _executors(shape: Shape, plan: Plan) -> dict[str, Callable[[], float]]:
    from benchmarks.naive_prefect import run_naive

    return {
        "stage_barrier": lambda: asyncio.run(references.stage_barrier(plan)),
        "naive_prefect": lambda: run_naive(plan),
        "ready_set": lambda: asyncio.run(references.ready_set(plan)),
        "promptdag": lambda: _run_promptdag(shape),
    }


def measure_shape(shape: Shape, server: LocalServer, repeats: int) -> ShapeResult:
    """Every executor on one shape, `repeats` times in rotated order; medians and samples."""
    plan = shape.plan()
    ideal, _ = schedules.ideal_list_schedule(plan)
    result = ShapeResult(
        shape=shape.name,
        why=shape.why,
        tasks=len(plan.names),
        breadth=plan.breadth,
        sequential=schedules.sequential(plan),
        lower_bound=schedules.lower_bound(plan),
        ideal=ideal,
        stage_barrier_exact=schedules.stage_barrier_schedule(plan),
        samples={name: [] for name in REAL},
    )
    executors = _executors(shape, plan)
    for repeat in range(min(repeats, shape.max_repeats)):
        order = REAL[repeat % len(REAL) :] + REAL[: repeat % len(REAL)]
        for name in order:
            # Both Prefect and asyncio runs start with an idle server: a previous run's event
            # backlog would otherwise compete for the CPU with this one.
            result.server_drain_seconds += server.wait_idle()
            result.samples[name].append(round(executors[name](), 4))
    result.median = {name: statistics.median(result.samples[name]) for name in REAL}
    return result


def warm_up(shape: Shape) -> None:
    """One unmeasured run of each executor: the first Prefect run in a process pays imports and
    client set-up (the start-up section measures that cold path on its own)."""
    for run in _executors(shape, shape.plan()).values():
        run()


def measure(shapes: list[Shape], server: LocalServer, repeats: int) -> list[ShapeResult]:
    """Measure every shape, after warming up on the smallest."""
    warm_up(min(shapes, key=lambda s: len(s.spec.tasks)))
    results = []
    for shape in shapes:
        print(f"quality: {shape.name} ...", file=sys.stderr, flush=True)
        results.append(measure_shape(shape, server, repeats))
        figures = {"ideal": results[-1].ideal, **results[-1].median}
        line = ", ".join(f"{k} {v:.2f}s" for k, v in figures.items())
        print(f"  {line}", file=sys.stderr, flush=True)
    return results
