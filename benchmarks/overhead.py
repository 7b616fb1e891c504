"""Orchestration overhead: what each task costs when the model costs nothing.

N independent zero-latency tasks at breadth 16: the makespan is all orchestration, so makespan / N
is the per-task cost. Each measurement runs in a fresh child process (`overhead_child`, so its
peak RSS is its own) that warms up first; the measured run starts on an idle server, and the
server's CPU is counted until it is idle again (what it spends recording the run).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import references
from benchmarks.server import LocalServer, quiet_env
from benchmarks.shapes import independent


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


class ChildFailed(RuntimeError):
    """The measured run failed; the message is the child's last error line."""


def measure_one(n: int, executor: str, server: LocalServer) -> OverheadResult:
    """Run one child for `executor` at `n` tasks against `server`."""
    env = quiet_env()
    env["PREFECT_API_URL"] = server.url
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.overhead_child", str(n), executor],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        warm = child.stdout.readline().strip() == "warm"
        drain = server.wait_idle() if warm else 0.0
        server_cpu = server.cpu_seconds()
        if warm:
            child.stdin.write("go\n")
            child.stdin.flush()
        line = child.stdout.readline() if warm else ""
        if child.wait(timeout=900) != 0 or not line:
            errors.seek(0)
            raise ChildFailed(_reason(errors.read()) or f"exit code {child.returncode}")
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


def _reason(stderr: str) -> str:
    """The useful part of a child's traceback: an API validation message, else the last line."""
    message = re.search(r"'msg': '([^']+)'", stderr)
    if message:
        return message.group(1)
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _attempt(n: int, executor: str, server: LocalServer) -> dict[str, Any]:
    try:
        return asdict(measure_one(n, executor, server))
    except ChildFailed as exc:
        print(f"  {executor} at {n} tasks failed: {exc}", file=sys.stderr, flush=True)
        return {"tasks": n, "executor": executor, "error": str(exc)}


def measure(
    sizes: list[int], naive_sizes: list[int], server: LocalServer, repeats: int
) -> list[dict[str, Any]]:
    """Per size: promptdag (median of `repeats` children at <= 100 tasks), naive Prefect, the
    zero-overhead reference; where promptdag cannot run the size, its scheduler alone."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        print(f"overhead: {n} tasks ...", file=sys.stderr, flush=True)
        runs = [_attempt(n, "promptdag", server) for _ in range(repeats if n <= 100 else 1)]
        ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["body_ms_per_task"])
        rows.append(
            {
                "tasks": n,
                "promptdag": ok[len(ok) // 2] if ok else runs[0],
                "promptdag_samples_ms": [r["body_ms_per_task"] for r in ok],
                "scheduler_only": None if ok else _attempt(n, "scheduler", server),
                "naive_prefect": _attempt(n, "naive", server) if n in naive_sizes else None,
                "ready_set_us_per_task": zero_overhead_us_per_task(n),
            }
        )
    return rows
