"""What artifacts cost a run: a 1,000-task zero-latency workflow with and without them.

    python -m benchmarks.artifact_overhead [N] [REPEATS]

Starts its own Prefect server (temporary PREFECT_HOME), warms up, then alternates runs with
PROMPTDAG_ARTIFACTS on and off so drift hits both sides alike, and prints per-task costs and
their ratios: wall time (makespan / N), and CPU time of this process and of the server's
processes, which other load on the machine disturbs much less than wall time. Not a test:
timings belong in reports, not in assertions.
"""

from __future__ import annotations

import asyncio
import os
import resource
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


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in the group (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


async def wait_until_idle(pgid: int, timeout: float = 120) -> None:
    """Let the server finish what earlier runs left it (events, logs) before measuring."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = group_cpu(pgid)
        await asyncio.sleep(1.0)
        if group_cpu(pgid) - before < 0.05:
            return


async def once(n: int, artifacts: bool, tag: str, server_pgid: int) -> tuple[float, float, float]:
    from promptdag.api import arun

    await wait_until_idle(server_pgid)
    os.environ["PROMPTDAG_ARTIFACTS"] = "true" if artifacts else "false"
    wall, cpu, server = time.perf_counter(), own_cpu(), group_cpu(server_pgid)
    result = await arun(spec(n, tag))
    costs = (time.perf_counter() - wall, own_cpu() - cpu, group_cpu(server_pgid) - server)
    assert result.status == "completed", result.summary
    return costs


async def measure(n: int, repeats: int, server_pgid: int) -> None:
    await once(20, True, "warm-up on", server_pgid)
    await once(20, False, "warm-up off", server_pgid)
    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for i in range(repeats):
        for artifacts in (False, True) if i % 2 else (True, False):
            runs[artifacts].append(await once(n, artifacts, f"{i} {artifacts}", server_pgid))
    print(f"{n} zero-latency tasks, breadth {BREADTH}, {repeats} runs each, median ms/task:")
    print(f"  {'':14}{'wall':>8}{'client cpu':>12}{'server cpu':>12}")
    medians = {}
    for artifacts in (False, True):
        medians[artifacts] = [statistics.median(r[k] for r in runs[artifacts]) for k in range(3)]
        cells = zip(medians[artifacts], (8, 12, 12), strict=True)
        row = "".join(f"{1000 * v / n:>{w}.2f}" for v, w in cells)
        print(f"  artifacts {'on ' if artifacts else 'off'} {row}")
    ratios = "".join(f"{on / off:>{w}.3f}" for on, off, w in
                     zip(medians[True], medians[False], (8, 12, 12), strict=True))
    print(f"  ratio on/off  {ratios}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.environ.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                      PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from promptdag.remote.local_server import free_port, start_server, stop_server
    from tests.deployments.conftest import drain_prefect_workers

    info = start_server(port=free_port(), home=Path(tempfile.mkdtemp(prefix="overhead-")))
    try:
        with temporary_settings(updates={PREFECT_API_URL: info.api_url}):
            asyncio.run(measure(n, repeats, info.pid))
            drain_prefect_workers()
    finally:
        stop_server(info)


if __name__ == "__main__":
    main()
