"""Orchestration overhead: what each task costs when the model costs nothing.

N independent zero-latency tasks at breadth 16: the makespan is all orchestration, so makespan / N
is the per-task cost. Each measurement runs in a fresh child process (so its peak RSS is its own)
that first warms up with a small run, then waits until the shared server is idle before the
measured run. Run as `python -m benchmarks.overhead N EXECUTOR` it is that child.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from benchmarks import references
from benchmarks.server import LocalServer, quiet_env
from benchmarks.shapes import Shape, make_shape, sim_task

BREADTH = 16


def independent(n: int, breadth: int = BREADTH) -> Shape:
    """N independent tasks with zero latency."""
    tasks = [sim_task(f"t{i}", 0.0, []) for i in range(n)]
    return make_shape(f"{n} zero-latency", "orchestration only", breadth, tasks)


@dataclass
class OverheadResult:
    """Per-task costs of one executor at one size (milliseconds unless named otherwise)."""

    tasks: int
    executor: str
    body_ms_per_task: float
    wall_ms_per_task: float
    client_cpu_ms_per_task: float
    server_cpu_ms_per_task: float | None
    peak_rss_mib: float
    rss_before_mib: float
    server_drain_seconds: float


def _child(n: int, executor: str) -> None:
    """Warm up, say so, wait for the parent's go, run N tasks, print the figures as JSON."""
    from promptdag.api import arun

    def run(shape: Shape) -> tuple[float, float]:
        clock = time.perf_counter()
        if executor == "promptdag":
            result = asyncio.run(arun(shape.fresh_spec()))
            if result.status != "completed" or any(t.reused for t in result.tasks):
                raise RuntimeError("overhead run did not complete, or reused results")
            body = result.elapsed_seconds
        else:
            from benchmarks.naive_prefect import run_naive

            body = run_naive(shape.plan())
        return body, time.perf_counter() - clock

    run(independent(10))
    shape = independent(n)
    rss_before = _current_rss_mib()
    print("warm", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    body, wall = run(shape)
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"body": body, "wall": wall, "cpu": cpu, "peak": peak, "before": rss_before}))


def _current_rss_mib() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure_one(n: int, executor: str, server: LocalServer) -> OverheadResult:
    """Run one child for `executor` at `n` tasks against `server`."""
    env = quiet_env()
    env["PREFECT_API_URL"] = server.url
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.overhead", str(n), executor],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "warm":
        child.kill()
        raise RuntimeError(f"overhead child ({executor}, {n}) failed to start")
    drain = server.wait_idle()
    server_cpu = server.cpu_seconds()
    child.stdin.write("go\n")
    child.stdin.flush()
    line = child.stdout.readline()
    if child.wait(timeout=600) != 0 or not line:
        raise RuntimeError(f"overhead child ({executor}, {n}) failed")
    drain += server.wait_idle()
    server_cpu = server.cpu_seconds() - server_cpu
    figures = json.loads(line)
    return OverheadResult(
        tasks=n,
        executor=executor,
        body_ms_per_task=round(figures["body"] / n * 1000, 3),
        wall_ms_per_task=round(figures["wall"] / n * 1000, 3),
        client_cpu_ms_per_task=round(figures["cpu"] / n * 1000, 3),
        server_cpu_ms_per_task=round(server_cpu / n * 1000, 3),
        peak_rss_mib=round(figures["peak"], 1),
        rss_before_mib=round(figures["before"], 1),
        server_drain_seconds=round(drain, 1),
    )


def zero_overhead_us_per_task(n: int) -> float:
    """The asyncio ready-set reference on the same N tasks: its cost per task, microseconds."""
    plan = independent(n).plan()
    return round(asyncio.run(references.ready_set(plan)) / n * 1e6, 1)


def measure(
    sizes: list[int], naive_sizes: list[int], server: LocalServer, repeats: int
) -> list[dict[str, object]]:
    """Per size: promptdag (median of `repeats` children), naive Prefect, and the reference."""
    rows: list[dict[str, object]] = []
    for n in sizes:
        print(f"overhead: {n} tasks ...", file=sys.stderr, flush=True)
        runs = [measure_one(n, "promptdag", server) for _ in range(repeats if n <= 100 else 1)]
        runs.sort(key=lambda r: r.body_ms_per_task)
        row: dict[str, object] = {
            "tasks": n,
            "promptdag": asdict(runs[len(runs) // 2]),
            "promptdag_samples_ms": [r.body_ms_per_task for r in runs],
            "naive_prefect": asdict(measure_one(n, "naive", server)) if n in naive_sizes else None,
            "ready_set_us_per_task": zero_overhead_us_per_task(n),
        }
        rows.append(row)
    return rows


if __name__ == "__main__":
    _child(int(sys.argv[1]), sys.argv[2])
