"""A streamed batch of 200,000 rows: time to the first row, and the CLI's memory as rows go by.

    python -m benchmarks.streaming [--rows 200000] [--run 3000] [--json PATH]

Writes a `--rows` JSONL file (one short question a row), starts a Prefect server of its own,
then runs `promptdag run SPEC --data ROWS --output OUT --quiet` (a one-task workflow on the
simulated model, no latency, breadth 16) and watches it from outside: the seconds from spawning
the CLI to the first line of OUT (a row finished, so its first task started before), and the
resident memory (RSS, /proc) of the CLI process, sampled every 0.2 s, with its value as the
row count passes 500, 1,000, 2,000, ... . After `--run` rows it cancels the run with
`promptdag cancel` (running 200,000 rows through Prefect takes hours on a 2-core machine; what
the run holds should not grow with the rows already done: the checkpoints show it) and
records the cancel's own figures: the `cancel` command's exit code, its last line and its
seconds, the seconds from the cancel to the CLI's exit, the CLI's exit code, the rows
written. Markdown on stdout; a copy in benchmarks/results/streaming-latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from promptdag.remote.local_server import free_port, kill_process_group, start_server

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"name": "stream bench", "config": {"breadth": 16, "model": "simulated:bench"},
        "tasks": [{"name": "Answer", "prompt": "Answer {{ question }}",
                   "model_options": {"latency_s": 0}}]}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def lines_in(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--run", type=int, default=3000, help="rows to run before cancelling")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="promptdag-stream-"))
    data, spec, out = work / "rows.jsonl", work / "spec.json", work / "out.jsonl"
    spec.write_text(json.dumps(SPEC))
    with data.open("w") as rows:
        for i in range(args.rows):
            rows.write(json.dumps({"id": f"row-{i}", "question": f"what is {i} squared?"}) + "\n")
    print(f"data: {args.rows:,} rows, {data.stat().st_size / 1e6:.1f} MB", file=sys.stderr)

    server = start_server(port=free_port(), home=work / "home", timeout=300)
    env = {**os.environ, "PREFECT_API_URL": server.api_url,
           "PREFECT_HOME": str(work / "home"),
           "PREFECT_LOCAL_STORAGE_PATH": str(work / "storage"),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    figures: dict[str, object] = {"rows_in_file": args.rows}
    try:
        spawned = time.monotonic()
        cli = subprocess.Popen(
            [sys.executable, "-m", "promptdag.cli", "run", str(spec), "--data", str(data),
             "--output", str(out), "--quiet"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        peak, first, checkpoints, mark = 0.0, None, {}, 500
        while cli.poll() is None:
            peak = max(peak, rss_mb(cli.pid))
            done = lines_in(out)
            if first is None and done:
                first = time.monotonic() - spawned
            while done >= mark:
                checkpoints[mark] = round(rss_mb(cli.pid), 1)
                mark *= 2
            if done >= args.run:
                break
            time.sleep(0.2)
        figures.update(first_row_seconds=round(first or -1, 2), peak_rss_mb=round(peak, 1),
                       rss_mb_at_rows=checkpoints, rows_done_before_cancel=lines_in(out),
                       seconds_running=round(time.monotonic() - spawned, 1))
        if cli.poll() is None:
            run_id = _run_id(work / "storage")
            cancelled_at = time.monotonic()
            told = subprocess.run([sys.executable, "-m", "promptdag.cli", "cancel", run_id],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            figures.update(cancel_exit_code=told.returncode,
                           cancel_seconds=round(time.monotonic() - cancelled_at, 1),
                           cancel_said=(told.stdout + told.stderr).strip().splitlines()[-1:])
            while cli.poll() is None and time.monotonic() - cancelled_at < 300:
                peak = max(peak, rss_mb(cli.pid))
                time.sleep(0.2)
            figures.update(cancel_to_exit_seconds=round(time.monotonic() - cancelled_at, 1),
                           exit_code=cli.poll(), rows_written=lines_in(out),
                           peak_rss_mb=round(peak, 1))
        if cli.poll() is None:
            kill_process_group(cli.pid, grace=1)
    finally:
        kill_process_group(server.pid, grace=2)
    report = _markdown(figures)
    print(report)
    (ROOT / "benchmarks" / "results" / "streaming-latest.md").write_text(report + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def _run_id(storage: Path) -> str:
    """The run's id: its row log (flows/row_log.py) is named after it (a fresh run's scope)."""
    return next((storage / "rows").glob("*.jsonl")).stem


def _markdown(figures: dict[str, object]) -> str:
    lines = ["| figure | value |", "|---|---|"]
    for key, value in figures.items():
        lines.append(f"| {key.replace('_', ' ')} | {value} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
