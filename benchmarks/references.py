"""Reference executors that really sleep: what the seeds do, and the zero-overhead ideal.

Benchmark references only, never used by the engine. Each "task" is `asyncio.sleep(latency)`,
so the makespan measures the scheduling policy plus the event loop's own timing error, which
is exactly the overhead a perfect orchestrator would still pay.
"""

from __future__ import annotations

import asyncio
import heapq
import time

from benchmarks.shapes import Plan


async def stage_barrier(plan: Plan) -> float:
    """The seeds' executor: group tasks into levels, `gather` each level under a semaphore of
    `breadth`, and start the next level only when the whole level is done."""
    semaphore = asyncio.Semaphore(plan.breadth)

    async def run(name: str) -> None:
        async with semaphore:
            await asyncio.sleep(plan.latency[name])

    clock = time.perf_counter()
    for level in plan.levels():
        await asyncio.gather(*(run(name) for name in level))
    return time.perf_counter() - clock


async def ready_set(plan: Plan) -> float:
    """The engine's rule with no orchestration at all: a ready heap (priority, then
    declaration), `breadth` slots, a task starts when its last dependency ends."""
    index = plan.index
    waiting = {name: len(plan.depends_on[name]) for name in plan.names}
    ready = [(-plan.priority[n], index[n], n) for n in plan.names if not waiting[n]]
    heapq.heapify(ready)
    running: dict[asyncio.Task[None], str] = {}

    async def run(name: str) -> None:
        await asyncio.sleep(plan.latency[name])

    clock = time.perf_counter()
    while ready or running:
        while ready and len(running) < plan.breadth:
            name = heapq.heappop(ready)[2]
            running[asyncio.create_task(run(name))] = name
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for future in sorted(done, key=lambda f: index[running[f]]):
            name = running.pop(future)
            for child in plan.dependents[name]:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(ready, (-plan.priority[child], index[child], child))
    return time.perf_counter() - clock
