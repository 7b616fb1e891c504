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
sizes (linear growth keeps it flat), and the 5,000 / 1,000 ratio (linear: at most 5x). The
process's CPU seconds until its first task are reported beside the wall clock: on a machine
shared with other work they are the steadier figure.

    PYTHONPATH=$PWD python -m benchmarks.first_task [--sizes 10 1000 5000] [--repeats 3]
        [--api-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.report import machine_line
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


def once(n: int, workdir: Path, env: dict[str, str]) -> tuple[float, float]:
    """For a fresh N-task spec: seconds from spawning the process to its first task's start,
    and the CPU seconds the process used until then (what a loaded machine distorts least)."""
    spec = workdir / f"spec-{n}.json"
    spec.write_text(json.dumps(chained_spec(n)))
    invoked = time.time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.first_task", "--child", str(spec)],
            env=env, stdout=out, stderr=err, text=True)
        _, _, usage = os.wait4(process.pid, 0)
        process.returncode = 0  # reaped above
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        if not lines:
            err.seek(0)
            raise RuntimeError(f"{n} tasks: no task started: {err.read().strip()[-500:]}")
    return (float(json.loads(lines[-1])["first_task"]) - invoked,
            usage.ru_utime + usage.ru_stime)


def measure(sizes: list[int], repeats: int, api_url: str | None = None
            ) -> dict[int, list[tuple[float, float]]]:
    """Every size once per round, `repeats` rounds, so load affects all sizes alike; against
    a new local server, or the one at `api_url`."""
    samples: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    workdir = Path(tempfile.mkdtemp(prefix="promptdag-first-task-"))
    with contextlib.ExitStack() as stack:
        server = None if api_url else stack.enter_context(LocalServer())
        env = quiet_env(str(workdir / "home"))
        env["PREFECT_API_URL"] = server.url if server else str(api_url)
        once(10, workdir, env)  # the client home's first use is not measured
        for round_ in range(repeats):
            for n in sizes:
                print(f"first_task: round {round_ + 1}, {n} tasks ...", file=sys.stderr,
                      flush=True)
                if server:
                    server.wait_idle()
                samples[n].append(once(n, workdir, env))
    return samples


def table(samples: dict[int, list[tuple[float, float]]]) -> str:
    sizes = sorted(samples)
    median = {n: statistics.median(wall for wall, _ in samples[n]) for n in sizes}
    cpu = {n: statistics.median(used for _, used in samples[n]) for n in sizes}
    rows = ["| tasks | first task (s), median | runs (s) | CPU (s), median | "
            "CPU ms per added task | x smallest (wall, CPU) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for i, n in enumerate(sizes):
        added = "" if i == 0 else (
            f"{(cpu[n] - cpu[sizes[i - 1]]) / (n - sizes[i - 1]) * 1000:.3f}")
        rows.append(f"| {n:,} | {median[n]:.2f} | "
                    f"{', '.join(f'{wall:.2f}' for wall, _ in samples[n])} | {cpu[n]:.2f} | "
                    f"{added} | {median[n] / median[sizes[0]]:.2f}x, "
                    f"{cpu[n] / cpu[sizes[0]]:.2f}x |")
    ratio = ""
    if 1000 in median and 5000 in median:
        ratio = (f" 5,000 / 1,000 tasks: {median[5000] / median[1000]:.2f}x wall, "
                 f"{cpu[5000] / cpu[1000]:.2f}x CPU (linear: at most 5x).")
    note = (f"\n`promptdag run` to its first task started, against a local server; chains of "
            f"{CHAIN} simulated tasks.{ratio} {machine_line()}\n")
    return "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_task", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--api-url", help="a running Prefect server's API (default: start one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
    text = table(measure(args.sizes, args.repeats, args.api_url))
    print(text)
    if args.sizes == [10, 1000, 5000]:
        (RESULTS / "first-task-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
