"""A batch at scale, side by side in one run: SQLite vs PostgreSQL, one worker vs two.

    python -m benchmarks.batch [--rows 1000] [--quick] [--json PATH]

The workload is issue 15's: N rows x a 3-task chain (simulated model, latency 0.5 s), breadth
64. Four runs of it, each against an idle Prefect server of its own configuration:

1. `promptdag run SPEC --data ROWS --output OUT` on a server on SQLite (the default);
2. the same on a server on PostgreSQL (benchmarks/postgres.py: a throwaway cluster);
3. on the PostgreSQL server through `prefect deploy --all` and one process worker:
   `promptdag submit --data --shards 1`, then `promptdag result --output`;
4. the same with two workers and `--shards 2` (each shard has its own breadth of 64).

Per run: the flow-body makespan (for shards: first shard start to last shard end, from the
flows' own results), the same against the exact ideal list schedule of the combined DAG
(benchmarks/schedules.py; for shards, the slowest shard's), the end-to-end wall clock (CLI
spawned to JSONL written), the server's CPU per task run (until it is idle again; PostgreSQL's
own processes in their own column) and the JSONL's line count. Markdown on stdout; the
default (issue 15's) run keeps a copy in benchmarks/results/batch-latest.md. About 4 minutes
on a quiet 2-core machine (13 on a loaded one); `--quick` (100 rows of 0.2 s) about 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.postgres import PostgresCluster, PostgresUnavailable
from benchmarks.schedules import ideal_list_schedule
from benchmarks.server import cpu_seconds
from benchmarks.shapes import Plan
from promptdag.engine.batch import expand
from promptdag.remote.local_server import WORK_POOL, ServerInfo, free_port, kill_process_group
from promptdag.remote.shards import split_rows
from promptdag.spec.graph import build_graph
from promptdag.spec.models import WorkflowSpec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PREFECT = [sys.executable, "-m", "prefect"]
PROMPTDAG = [sys.executable, "-m", "promptdag.cli"]


def batch_spec(latency: float, breadth: int) -> WorkflowSpec:
    return parse_spec({
        "name": "batch benchmark",
        "config": {"breadth": breadth, "model": "simulated",
                   "model_options": {"latency_s": latency}, "reuse_results": False},
        "tasks": [
            {"name": "Summarise", "prompt": "Summarise this ticket: {{ ticket }}"},
            {"name": "Classify", "prompt": "Classify the issue in {{ Summarise }}"},
            {"name": "Reply", "prompt": "Draft a reply about {{ Classify }} to {{ customer }}"},
        ],
    })


def batch_rows(count: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:05d}", "customer": f"customer {i}", "ticket": f"order {i} is late"}
            for i in range(count)]


def ideal_makespan(spec: WorkflowSpec, rows: list[dict[str, Any]], shards: int,
                   latency: float) -> float:
    """The exact zero-overhead list schedule of each shard's combined DAG; the slowest."""
    worst = 0.0
    for shard in split_rows(rows, shards):
        combined = expand(spec, shard.rows, shard.offset).spec
        graph = build_graph(combined)
        plan = Plan(
            name="batch", breadth=combined.config.breadth, names=graph.names,
            depends_on=dict(graph.depends_on), dependents=dict(graph.dependents),
            latency=dict.fromkeys(graph.names, latency), priority=dict(graph.priority),
            topological=tuple(graph.topological_order()),
        )
        worst = max(worst, ideal_list_schedule(plan)[0])
    return worst


@dataclass
class Figures:
    label: str
    database: str
    workers: int
    shards: int
    rows_written: int
    task_runs: int
    makespan_s: float
    ideal_s: float
    end_to_end_s: float
    server_cpu_ms: float
    postgres_cpu_ms: float | None

    @property
    def ratio(self) -> float:
        return self.makespan_s / self.ideal_s if self.ideal_s else 0.0


class Setup:
    """A Prefect server (on SQLite, or on a PostgreSQL cluster) with what runs need."""

    def __init__(self, stack: ExitStack, postgres: PostgresCluster | None) -> None:
        from promptdag.remote.local_server import server_env, start_server, stop_server

        self.postgres = postgres
        self.home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-batch-")))
        extra = {"PREFECT_API_DATABASE_CONNECTION_URL": postgres.url} if postgres else {}
        # quiet: no per-task INFO lines to the API, as a production server would be run
        self.info: ServerInfo = start_server(port=free_port(), home=self.home, timeout=120,
                                             env={**extra, "PREFECT_LOGGING_LEVEL": "WARNING"})
        stack.callback(stop_server, self.info)
        self.env = server_env(self.info.host, self.info.port, self.home)
        self.env.update(PREFECT_API_URL=self.info.api_url, PREFECT_LOGGING_LEVEL="WARNING",
                        PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="2",
                        PREFECT_RUNNER_POLL_FREQUENCY="1")
        self.workers: list[int] = []
        stack.callback(self._stop_workers)

    def cpu(self) -> tuple[float, float | None]:
        return (cpu_seconds(self.info.pid, reaped=True),
                cpu_seconds(self.postgres.process.pid, reaped=True) if self.postgres else None)

    def wait_idle(self, timeout: float = 180.0, window: float = 1.0) -> None:
        """Until the server (and PostgreSQL) use < 10% of a core over `window` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = sum(c or 0.0 for c in self.cpu())
            time.sleep(window)
            if sum(c or 0.0 for c in self.cpu()) - before < 0.1 * window:
                return

    def run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(args), cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(args[:4])} ...: {done.stderr.strip()[-800:]}")
        return done

    def deploy(self) -> None:
        self.run(*PREFECT, "work-pool", "create", WORK_POOL, "--type", "process")
        self.run(*PREFECT, "--no-prompt", "deploy", "--all", timeout=300)

    def start_worker(self, name: str) -> None:
        log = (self.home / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", WORK_POOL, "--name", name, "--limit", "1"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.workers.append(process.pid)

    def _stop_workers(self) -> None:
        for pid in self.workers:
            kill_process_group(pid, grace=5)


def measure(setup: Setup, label: str, work: Path, shards: int | None, ideal: float,
            task_runs: int) -> Figures:
    """One run: in this process's child (`shards` None) or as shards on the workers."""
    setup.wait_idle()
    output = work / f"{label.replace(' ', '-')}.jsonl"
    server_before, pg_before = setup.cpu()
    clock = time.perf_counter()
    if shards is None:
        done = setup.run(*PROMPTDAG, "run", str(work / "spec.json"), "--data",
                         str(work / "rows.jsonl"), "--output", str(output), "--json")
        makespan = float(json.loads(done.stdout)["elapsed_seconds"])
    else:
        submitted = setup.run(*PROMPTDAG, "submit", str(work / "spec.json"), "--data",
                              str(work / "rows.jsonl"), "--shards", str(shards))
        run_ids = submitted.stdout.split()
        setup.run(*PROMPTDAG, "result", *run_ids, "--output", str(output))
        makespan = shards_makespan(setup, run_ids)
    end_to_end = time.perf_counter() - clock
    setup.wait_idle()
    server_after, pg_after = setup.cpu()
    lines = sum(1 for line in output.read_text().splitlines() if line.strip())
    return Figures(
        label=label, database="PostgreSQL" if setup.postgres else "SQLite",
        workers=len(setup.workers) if shards else 0, shards=shards or 0, rows_written=lines,
        task_runs=task_runs, makespan_s=round(makespan, 2), ideal_s=round(ideal, 2),
        end_to_end_s=round(end_to_end, 2),
        server_cpu_ms=round((server_after - server_before) * 1000 / task_runs, 2),
        postgres_cpu_ms=(round((pg_after - pg_before) * 1000 / task_runs, 2)
                         if pg_after is not None and pg_before is not None else None),
    )


def shards_makespan(setup: Setup, run_ids: list[str]) -> float:
    """First task started to last task finished, over every shard (the flows' own clocks)."""
    starts, ends = [], []
    for run_id in run_ids:
        done = setup.run(*PROMPTDAG, "result", run_id, "--json", "--no-wait")
        result = json.loads(done.stdout)
        starts.append(datetime.fromisoformat(result["started_at"]))
        ends.append(datetime.fromisoformat(result["finished_at"]))
    return (max(ends) - min(starts)).total_seconds()


def run_all(rows: int, latency: float, breadth: int) -> list[Figures]:
    spec, data = batch_spec(latency, breadth), batch_rows(rows)
    task_runs = rows * len(spec.tasks)
    ideal_one, ideal_two = (ideal_makespan(spec, data, n, latency) for n in (1, 2))
    figures = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-batch-io-")))
        (work / "spec.json").write_text(spec.model_dump_json(exclude_unset=True))
        (work / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))

        say(f"{rows} rows x {len(spec.tasks)} tasks: SQLite server ...")
        with ExitStack() as sqlite:
            setup = Setup(sqlite, None)
            figures.append(measure(setup, "one run, SQLite", work, None, ideal_one, task_runs))
        try:
            postgres = stack.enter_context(PostgresCluster())
        except PostgresUnavailable as exc:
            say(f"skipping PostgreSQL: {exc}")
            return figures
        say("PostgreSQL server ...")
        setup = Setup(stack, postgres)
        figures.append(measure(setup, "one run, PostgreSQL", work, None, ideal_one, task_runs))
        say("deploy, one worker ...")
        setup.deploy()
        setup.start_worker("bench-worker-1")
        figures.append(measure(setup, "1 worker, 1 shard", work, 1, ideal_one, task_runs))
        say("two workers ...")
        setup.start_worker("bench-worker-2")
        figures.append(measure(setup, "2 workers, 2 shards", work, 2, ideal_two, task_runs))
    return figures


def table(figures: list[Figures], rows: int, latency: float, breadth: int) -> str:
    head = ("| run | database | rows written | makespan (s) | ideal list (s) | x ideal | "
            "end to end (s) | server CPU ms/task run | PostgreSQL CPU ms/task run |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    body = "".join(
        f"| {f.label} | {f.database} | {f.rows_written:,} | {f.makespan_s:.2f} | "
        f"{f.ideal_s:.2f} | {f.ratio:.2f}x | {f.end_to_end_s:.2f} | {f.server_cpu_ms:.1f} | "
        f"{'n/a' if f.postgres_cpu_ms is None else f'{f.postgres_cpu_ms:.1f}'} |\n"
        for f in figures
    )
    import platform

    from prefect import __version__ as prefect_version

    note = (f"\n{rows:,} rows x 3 tasks (simulated, {latency} s a call), breadth {breadth} per "
            f"run; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, prefect {prefect_version}; load average "
            f"{os.getloadavg()[0]:.2f} at the end.\n")
    return head + body + note


def say(message: str) -> None:
    print(f"benchmarks.batch: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--breadth", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="100 rows of 0.2 s calls")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.latency = 100, 0.2
    figures = run_all(args.rows, args.latency, args.breadth)
    text = table(figures, args.rows, args.latency, args.breadth)
    print(text)
    if not args.quick and (args.rows, args.latency, args.breadth) == (1000, 0.5, 64):
        (RESULTS / "batch-latest.md").write_text(text)
        from benchmarks.publish import publish

        publish("batch", text)  # the latest figures in docs/benchmarks.md
    if args.json:
        args.json.write_text(json.dumps([asdict(f) | {"x_ideal": round(f.ratio, 3)}
                                         for f in figures], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
