"""Measure what cross-run provider limits cost (figures for docs/benchmarks.md).

    .venv/bin/python -m benchmarks.provider_limits

Starts a temporary Prefect server and a loopback OpenAI-compatible server whose every answer
takes `--latency` seconds, then times: the scheduler's own breadth limit against the same limit
held as a Prefect global concurrency limit (in one run, and across two concurrent runs), the
cost of an uncontended slot per call, and a requests-per-second limit. `max in flight` is what
the server saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect.testing.utilities import prefect_test_harness

from promptdag.api import arun
from tests.providers.servers import OpenAIServer, Reply, WireServer


def spec(name: str, tasks: int, breadth: int, base_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "config": {
            "breadth": breadth,
            "model": "openai:gpt-4o-mini",
            "model_options": {"base_url": base_url},
            "retry_backoff_seconds": 0,
            "reuse_results": False,
        },
        "tasks": [
            {"name": f"t{i}", "prompt": f"task {i}", "task_type": "parallel"} for i in range(tasks)
        ],
    }


async def timed(server: WireServer, *specs: dict[str, Any], latency: float) -> dict[str, Any]:
    server.requests.clear()
    server.max_in_flight = 0
    count = sum(len(s["tasks"]) for s in specs)
    server.script(*[Reply(content="ok", delay=latency)] * count)
    clock = time.perf_counter()
    results = await asyncio.gather(*(arun(s) for s in specs))
    elapsed = time.perf_counter() - clock
    assert all(r.status == "completed" for r in results), [r.tasks for r in results]
    starts = sorted(seen.start for seen in server.requests)
    return {
        "seconds": round(elapsed, 2),
        "max_in_flight": server.max_in_flight,
        "first_to_last_start_s": round(starts[-1] - starts[0], 2),
    }


def limits(value: dict[str, Any] | None) -> None:
    if value is None:
        os.environ.pop("PROMPTDAG_PROVIDER_LIMITS", None)
    else:
        os.environ["PROMPTDAG_PROVIDER_LIMITS"] = json.dumps({"openai": value})


async def measure(latency: float, repeat: int) -> dict[str, Any]:
    server = OpenAIServer(key=None).start()
    url = f"{server.url}/v1"
    figures: dict[str, Any] = {"latency_s": latency}
    try:
        limits(None)
        await timed(server, spec("warm-up", 2, 2, url), latency=0.0)
        cases = {
            "8 tasks, breadth 2 (scheduler, in memory)": (
                None, [spec("a", 8, 2, url)], latency),
            "8 tasks, breadth 8, provider limit 2 (Prefect GCL)": (
                {"max_in_flight": 2}, [spec("a", 8, 8, url)], latency),
            "2 concurrent runs x 4 tasks, breadth 4, provider limit 2": (
                {"max_in_flight": 2}, [spec("a", 4, 4, url), spec("b", 4, 4, url)], latency),
            "20 calls one at a time, no limit": (None, [spec("a", 20, 1, url)], 0.0),
            "20 calls one at a time, provider limit 8 (never contended)": (
                {"max_in_flight": 8}, [spec("a", 20, 1, url)], 0.0),
            "8 quick calls, breadth 8, 4 requests/s": (
                {"requests_per_second": 4}, [spec("a", 8, 8, url)], 0.0),
        }  # fmt: skip
        for name, (limit, specs, delay) in cases.items():
            limits(limit)
            runs = [await timed(server, *specs, latency=delay) for _ in range(repeat)]
            figures[name] = runs
            print(f"{name}: {runs}", flush=True)
    finally:
        limits(None)
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with prefect_test_harness(server_startup_timeout=60):
        figures = asyncio.run(measure(args.latency, args.repeat))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
