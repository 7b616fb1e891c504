"""Time to the first task: does it grow linearly with the spec?

`promptdag run SPEC` on specs of 10, 1,000 and 5,000 tasks (the simulated model, no network),
side by side in one run against one local Prefect server, each in a fresh process. The clock
starts just before the process is spawned and stops at the scheduler's first `started` task
event (promptdag/engine/events.py), which the process reports and then exits at once: the
rest of the run is not the question, and a 5,000-task run would take minutes. The span holds
the interpreter's start, imports, reading and validating the spec, graph building, reaching
the server, creating the flow run and the scheduler's set-up.

The shape is wide and chained: N/5 independent chains of 5 tasks, each link naming the one
before it in its prompt (`{{c3.0}}`), so reference parsing and the dependency graph are
exercised. Reported: the median seconds per size, the marginal cost per added task between
sizes (linear growth keeps it flat), and the 5,000 / 1,000 ratio (linear: at most 5x).

    PYTHONPATH=$PWD python -m benchmarks.first_task [--sizes 10 1000 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.server import LocalServer, quiet_env

RESULTS = Path(__file__).resolve().parent / "results"
CHAIN = 5


def chained_spec(n: int) -> dict[str, Any]:
    """N zero-latency tasks as N/5 chains of 5, each link referencing the previous one."""
    tasks = []
    for c in range(max(1, n // CHAIN)):
        for k in range(CHAIN):
            prompt = f"Work on c{c}.{k}" + (f" after {{{{c{c}.{k - 1}}}}}" if k else "")
            tasks.append({"name": f"c{c}.{k}", "prompt": prompt,
                          "depends_on": [f"c{c}.{k - 1}"] if k else [],
                          "model_options": {"latency_s": 0.0}})
    return {"name": f"first task {n} #{uuid.uuid4().hex[:10]}",
            "config": {"breadth": 16, "max_retries": 0}, "tasks": tasks[:n]}


def child(spec: str) -> None:
    """The measured process: `promptdag run SPEC --json` in this process; at the first
    `started` event, print the wall clock and leave."""
    from promptdag.engine import events

    def on_event(event: events.TaskEvent) -> None:
        if event.kind == "started":
            print(json.dumps({"first_task": time.time()}), flush=True)
            os._exit(0)

    events.subscribe(on_event)
    from promptdag.cli.main import main

    main(["run", spec, "--json"])
    os._exit(1)  # the run ended without a started event


def once(n: int, workdir: Path, env: dict[str, str]) -> float:
    """Seconds from spawning the process to its first task's start, for a fresh N-task spec."""
    spec = workdir / f"spec-{n}.json"
    spec.write_text(json.dumps(chained_spec(n)))
    invoked = time.time()
    done = subprocess.run([sys.executable, "-m", "benchmarks.first_task", "--child", str(spec)],
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{n} tasks: no task started: {done.stderr.strip()[-500:]}")
    return float(json.loads(lines[-1])["first_task"]) - invoked


def measure(sizes: list[int], repeats: int) -> dict[int, list[float]]:
    """Every size once per round, `repeats` rounds, so load affects all sizes alike."""
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    workdir = Path(tempfile.mkdtemp(prefix="promptdag-first-task-"))
    with LocalServer() as server:
        env = quiet_env(str(workdir / "home"))
        env["PREFECT_API_URL"] = server.url
        once(10, workdir, env)  # the client home's first use is not measured
        for round_ in range(repeats):
            for n in sizes:
                print(f"first_task: round {round_ + 1}, {n} tasks ...", file=sys.stderr,
                      flush=True)
                server.wait_idle()
                samples[n].append(once(n, workdir, env))
    return samples


def table(samples: dict[int, list[float]]) -> str:
    sizes = sorted(samples)
    median = {n: statistics.median(samples[n]) for n in sizes}
    rows = ["| tasks | first task (s), median | runs (s) | ms per added task | x smallest |",
            "| --- | --- | --- | --- | --- |"]
    for i, n in enumerate(sizes):
        added = "" if i == 0 else (
            f"{(median[n] - median[sizes[i - 1]]) / (n - sizes[i - 1]) * 1000:.3f}")
        rows.append(f"| {n:,} | {median[n]:.2f} | "
                    f"{', '.join(f'{s:.2f}' for s in samples[n])} | {added} | "
                    f"{median[n] / median[sizes[0]]:.2f}x |")
    from prefect import __version__ as prefect_version

    ratio = ""
    if 1000 in median and 5000 in median:
        ratio = f" 5,000 / 1,000 tasks: {median[5000] / median[1000]:.2f}x (linear: at most 5x)."
    note = (f"\n`promptdag run` to its first task started, against a local server; chains of "
            f"{CHAIN} simulated tasks.{ratio} {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, prefect "
            f"{prefect_version}; load average {os.getloadavg()[0]:.2f} at the end.\n")
    return "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_task", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
    text = table(measure(args.sizes, args.repeats))
    print(text)
    if args.sizes == [10, 1000, 5000]:
        (RESULTS / "first-task-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
