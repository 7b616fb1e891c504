"""Exact, sleep-free makespans: sequential, the lower bound, and the ideal list schedule.

These are the references that noise cannot move. `ideal_list_schedule` applies the engine's
rule (a ready set; higher priority, then declaration order; `breadth` slots; a task starts the
instant its last dependency ends) with zero overhead, as a discrete-event simulation.
"""

from __future__ import annotations

from benchmarks.shapes import Plan
from promptdag.engine.estimate import list_schedule


def sequential(plan: Plan) -> float:
    """One task at a time: the sum of all latencies."""
    return sum(plan.latency.values())


def critical_path(plan: Plan) -> float:
    """The longest chain of latencies: no schedule can beat it."""
    finish: dict[str, float] = {}
    for name in plan.topological:
        start = max((finish[d] for d in plan.depends_on[name]), default=0.0)
        finish[name] = start + plan.latency[name]
    return max(finish.values(), default=0.0)


def lower_bound(plan: Plan) -> float:
    """max(critical path, work / breadth): no schedule with `breadth` slots can beat it."""
    return max(critical_path(plan), sequential(plan) / plan.breadth)


def ideal_list_schedule(plan: Plan) -> tuple[float, dict[str, float]]:
    """The makespan (and each task's start) of the zero-overhead ready-set list schedule:
    the core's simulation (`promptdag.engine.estimate.list_schedule`, which `promptdag validate`
    prints as its estimate), so the benchmarks' ideal and the user's estimate are one code."""
    return list_schedule(plan.names, plan.depends_on, plan.latency, plan.breadth, plan.priority)


def stage_barrier_schedule(plan: Plan) -> float:
    """What a level-by-level executor (each level gathered under a semaphore) takes with zero
    overhead: the list schedule of each level on its own, summed."""
    total = 0.0
    for level in plan.levels():
        slots = [0.0] * min(plan.breadth, len(level))
        for name in level:  # a FIFO semaphore admits the level's tasks in declaration order
            slot = slots.index(min(slots))
            slots[slot] += plan.latency[name]
        total += max(slots, default=0.0)
    return total
