"""The measured process of the overhead benchmark: `python -m benchmarks.overhead_child N HOW`.

It warms up with a small run, prints `warm`, waits for a line on stdin (the parent waits for an
idle server first), runs N zero-latency tasks and prints its figures as one JSON line.
HOW is `promptdag` (the public `arun`), `naive` (reference (d)), or `scheduler`: promptdag's own
`ReadySetScheduler` inside a flow that builds the spec in its body, for sizes whose spec is
too big to pass as a flow parameter (Prefect refuses parameters over 512 KiB).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from benchmarks.shapes import Shape, independent


async def _scheduler_only(n: int) -> float:
    """promptdag's scheduler on N tasks in a flow whose only parameter is N."""
    from prefect import flow

    from promptdag.flows.scheduler import ReadySetScheduler
    from promptdag.spec.validation import validate_spec

    @flow(name="bench-scheduler-only", persist_result=False)
    async def scheduler_only(n: int) -> float:
        spec = independent(n).fresh_spec()
        graph = validate_spec(spec)
        clock = time.perf_counter()
        results = await ReadySetScheduler(spec, graph).run()
        if any(r.status != "completed" for r in results):
            raise RuntimeError("scheduler-only run did not complete")
        return time.perf_counter() - clock

    return float(await scheduler_only(n))


def run(shape: Shape, how: str) -> float:
    """One run of `shape`; its flow-body makespan in seconds."""
    if how == "promptdag":
        from promptdag.api import arun

        result = asyncio.run(arun(shape.fresh_spec()))
        if result.status != "completed" or any(t.reused for t in result.tasks):
            raise RuntimeError("overhead run did not complete, or reused results")
        return result.elapsed_seconds
    if how == "naive":
        from benchmarks.naive_prefect import run_naive

        return run_naive(shape.plan())
    if how == "scheduler":
        return asyncio.run(_scheduler_only(len(shape.spec.tasks)))
    raise ValueError(f"unknown executor {how!r}")


def current_rss_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(n: int, how: str) -> None:
    run(independent(10), how)
    shape = independent(n)
    rss_before = current_rss_mib()
    print("warm", flush=True)
    sys.stdin.readline()
    cpu, clock = time.process_time(), time.perf_counter()
    body = run(shape, how)
    wall, cpu = time.perf_counter() - clock, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"body": body, "wall": wall, "cpu": cpu, "peak": peak, "before": rss_before}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
