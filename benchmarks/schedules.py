"""Exact, sleep-free makespans: sequential, the lower bound, and the ideal list schedule.

These are the references that noise cannot move. `ideal_list_schedule` applies the engine's
rule (a ready set; higher priority, then declaration order; `breadth` slots; a task starts the
instant its last dependency ends) with zero overhead, as a discrete-event simulation.
"""

from __future__ import annotations

import heapq

from benchmarks.shapes import Plan


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
    """The makespan (and each task's start) of the zero-overhead ready-set list schedule.

    All tasks ending at the same instant release their dependents before the free slots are
    refilled, so ties never depend on event order.
    """
    index = plan.index
    waiting = {name: len(plan.depends_on[name]) for name in plan.names}
    ready = [(-plan.priority[n], index[n], n) for n in plan.names if not waiting[n]]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []  # (finish time, index, name)
    start: dict[str, float] = {}
    now = 0.0
    while ready or running:
        while ready and len(running) < plan.breadth:
            _, i, name = heapq.heappop(ready)
            start[name] = now
            heapq.heappush(running, (now + plan.latency[name], i, name))
        now = running[0][0]
        while running and running[0][0] <= now:
            _, _, name = heapq.heappop(running)
            for child in plan.dependents[name]:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(ready, (-plan.priority[child], index[child], child))
    return now, start


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
