"""What artifacts cost a run: a 1,000-task zero-latency workflow with and without them.

    python -m tests.deployments.measure_artifact_overhead [N] [REPEATS]

Starts its own Prefect server (temporary PREFECT_HOME), warms up, then alternates runs with
PROMPTDAG_ARTIFACTS on and off so drift hits both sides alike, and prints per-task cost
(makespan / N) and the ratio. Not a test: timings belong in reports, not in assertions.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BREADTH = 16


def spec(n: int, tag: str) -> dict[str, object]:
    return {
        "name": f"overhead {tag}",
        "config": {"breadth": BREADTH, "max_retries": 0},
        "tasks": [{"name": f"t{i}", "prompt": f"task {i}", "task_type": "parallel"}
                  for i in range(n)],
    }


async def once(n: int, artifacts: bool, tag: str) -> float:
    from promptdag.api import arun

    os.environ["PROMPTDAG_ARTIFACTS"] = "true" if artifacts else "false"
    started = time.perf_counter()
    result = await arun(spec(n, tag))
    elapsed = time.perf_counter() - started
    assert result.status == "completed", result.summary
    return elapsed


async def measure(n: int, repeats: int) -> None:
    await once(20, True, "warm-up on")
    await once(20, False, "warm-up off")
    timings: dict[bool, list[float]] = {True: [], False: []}
    for i in range(repeats):
        for artifacts in (False, True) if i % 2 else (True, False):
            timings[artifacts].append(await once(n, artifacts, f"{i} {artifacts}"))
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    print(f"{n} zero-latency tasks, breadth {BREADTH}, {repeats} runs each (median):")
    print(f"  artifacts off: {off:.2f} s = {1000 * off / n:.2f} ms/task")
    print(f"  artifacts on:  {on:.2f} s = {1000 * on / n:.2f} ms/task")
    print(f"  ratio on/off:  {on / off:.3f}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.environ.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                      PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from promptdag.server import free_port, start_server, stop_server

    info = start_server(port=free_port(), home=Path(tempfile.mkdtemp(prefix="overhead-")))
    try:
        with temporary_settings(updates={PREFECT_API_URL: info.api_url}):
            asyncio.run(measure(n, repeats))
    finally:
        stop_server(info)


if __name__ == "__main__":
    main()
