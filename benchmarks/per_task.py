"""Per-task cost of promptdag against a bare Prefect task run, side by side in one process, on
each Prefect version given: `python -m benchmarks.per_task [--python OTHER_VENV/bin/python]`.

Each interpreter runs one child process (its own temporary PREFECT_HOME, Prefect's ephemeral
API) that warms up, then alternates `rounds` times between three executors of N independent
zero-latency tasks at breadth 16, all awaited on the flow's event loop:

- **bare**: an async `@task` that returns at once (the floor Prefect sets);
- **bare + persisted**: the same with `persist_result=True` and an inputs cache policy (what
  resume needs);
- **promptdag**: `promptdag.api.arun` on a spec of N independent `simulated` tasks.

Per-task cost = the flow body's makespan / N (median of the rounds); the ratio promptdag /
bare + persisted is what promptdag adds on top of Prefect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.server import quiet_env

BREADTH = 16


def child(n: int, rounds: int) -> dict[str, Any]:
    import prefect
    from prefect import flow, task
    from prefect.cache_policies import INPUTS

    from promptdag.api import arun

    @task
    async def bare(i: int) -> int:
        return i

    persisted = bare.with_options(persist_result=True, cache_policy=INPUTS)

    def bounded(one: Any, tag: str) -> Any:
        @flow(name=f"bench-{tag}")
        async def body(n: int, salt: str) -> float:
            gate = asyncio.Semaphore(BREADTH)

            async def run(i: int) -> None:
                async with gate:
                    await one(i if tag == "bare" else hash((salt, i)))

            clock = time.perf_counter()
            await asyncio.gather(*(run(i) for i in range(n)))
            return time.perf_counter() - clock

        return body

    def spec(salt: str) -> dict[str, Any]:
        return {"name": f"per-task {salt}", "config": {"breadth": BREADTH},
                "tasks": [{"name": f"t{i}", "prompt": f"{salt} {i}", "depends_on": []}
                          for i in range(n)]}

    async def promptdag_body(salt: str) -> float:
        result = await arun(spec(salt))
        return result.elapsed_seconds  # measured inside the flow, as the bare bodies are

    executors = {"bare": bounded(bare, "bare"), "bare + persisted": bounded(persisted, "p")}
    times: dict[str, list[float]] = {name: [] for name in [*executors, "promptdag"]}

    async def main() -> None:
        await executors["bare"](20, "warm")
        await promptdag_body("warm")
        for r in range(rounds):
            for name, body in executors.items():
                times[name].append(await body(n, f"{r}-{time.time()}"))
            times["promptdag"].append(await promptdag_body(f"{r}-{time.time()}"))

    asyncio.run(main())
    return {"prefect": prefect.__version__, "tasks": n,
            "ms_per_task": {k: round(1000 * statistics.median(v) / n, 2)
                            for k, v in times.items()}}


def measure(python: str, n: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            [python, "-m", "benchmarks.per_task", "--child", str(n), str(rounds)],
            env=quiet_env(home), capture_output=True, text=True, timeout=3600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{python}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| prefect | tasks | bare ms/task | bare + persisted ms/task | promptdag ms/task "
             "| promptdag / bare + persisted |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        ms = r["ms_per_task"]
        ratio = ms["promptdag"] / ms["bare + persisted"]
        lines.append(f"| {r['prefect']} | {r['tasks']} | {ms['bare']} | {ms['bare + persisted']}"
                     f" | {ms['promptdag']} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter (a venv with another Prefect) to measure too")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    results = [measure(python, args.tasks, args.rounds)
               for python in [sys.executable, *args.python]]
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
