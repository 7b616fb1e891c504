"""What fanning out costs against declaring the same tasks: `python -m benchmarks.fan_out
[--items N] [--rounds R]`.

One child process (its own temporary PREFECT_HOME, Prefect's ephemeral API) warms up, then
alternates `rounds` times between two specs of the same work on the zero-latency `simulated`
model at breadth 16: an outline, N research tasks, a writing task that joins them, with the N
tasks either declared in the spec or added at run time by `for_each` over the outline's list.
Both are timed inside the flow (`elapsed_seconds`); the difference per item is what adding a
task while running costs.
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


def specs(n: int, salt: str) -> dict[str, dict[str, Any]]:
    outline = {"name": "Outline", "prompt": f"Outline {salt}", "output_schema": {
        "type": "object", "properties": {"sections": {"type": "array",
                                                      "items": {"type": "string"}}}},
        "model_options": {"outputs": {"Outline": {"sections": [f"s{i}" for i in range(n)]}}}}
    write = {"name": "Write", "prompt": "Write {{ Research }}"}
    declared = [{"name": f"Research {i}", "prompt": f"Research s{i} {salt}",
                 "depends_on": ["Outline"]} for i in range(n)]
    joined = {**write, "prompt": "Write", "depends_on": [t["name"] for t in declared]}
    fanned = {"name": "Research", "for_each": "{{ Outline.sections }}", "max_items": n,
              "prompt": f"Research {{{{ item }}}} {salt}"}
    config = {"breadth": BREADTH}
    return {
        "declared": {"name": f"declared {salt}", "config": config,
                     "tasks": [outline, *declared, joined]},
        "fan-out": {"name": f"fan-out {salt}", "config": config,
                    "tasks": [outline, fanned, write]},
    }


def child(n: int, rounds: int) -> dict[str, Any]:
    from promptdag.api import arun

    times: dict[str, list[float]] = {"declared": [], "fan-out": []}

    async def main() -> None:
        for spec in specs(5, "warm").values():
            await arun(spec)
        for r in range(rounds):
            for name, spec in specs(n, f"{r}-{time.time()}").items():
                result = await arun(spec)
                assert result.status == "completed" and len(result.tasks) >= n + 2, name
                times[name].append(result.elapsed_seconds)

    asyncio.run(main())
    return {"items": n, "seconds": {k: round(statistics.median(v), 3) for k, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.fan_out", "--child", str(args.items),
             str(args.rounds)], env={**quiet_env(home), "PROMPTDAG_AUTO_SERVER": "false"},
            capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        print(done.stderr.strip()[-2000:], file=sys.stderr)
        return 1
    found = json.loads(done.stdout.strip().splitlines()[-1])
    s = found["seconds"]
    per_item = 1000 * (s["fan-out"] - s["declared"]) / found["items"]
    print("| items | declared s | fan-out s | difference ms/item |\n| --- | --- | --- | --- |\n"
          f"| {found['items']} | {s['declared']} | {s['fan-out']} | {per_item:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
