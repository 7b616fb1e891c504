"""`python -m benchmarks.streamed_planning [--server llama|simulated] [--repeats N]`: how much
sooner an objective's first task starts when its plan streams.

Runs the same objective with `stream_plan` on and off, alternating, against one local Prefect
server, and measures from the planner being asked (`planning_started_at`) to round 1's first
task being dispatched (`first_task_started_at`). Both come from the objective's result, so
the figure is what a user's run reports. Prints a Markdown table (medians and the ratio) and
keeps a copy in `benchmarks/results/streamed-planning-<server>.md`.

- `--server llama` (default when ../shared/llm is there): llama.cpp's server with SmolLM2-135M
  from shared/llm, started on a free port for the run (4 slots: the first task's call runs
  beside the planner's stream);
- `--server simulated`: the simulated model, its `latency_s` spread over the streamed answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LLM_DIR = Path(os.environ.get("PROMPTDAG_TEST_LLM_DIR") or ROOT.parent / "shared" / "llm")
OBJECTIVE = "Name two uses of AI in hospitals"
CONTEXT = {"focus_areas": ["diagnosis", "scheduling", "imaging"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """shared/llm's llama-server on a free port, for the length of the benchmark."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.run_dir = Path(tempfile.mkdtemp(prefix="promptdag-bench-llama-"))

    def __enter__(self) -> str:
        done = subprocess.run([str(LLM_DIR / "start.sh"), str(self.port)], capture_output=True,
                              text=True, env={**os.environ, "TMPDIR": str(self.run_dir)},
                              timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"llama-server did not start: {done.stderr.strip()}")
        return done.stdout.strip()

    def __exit__(self, *exc: object) -> None:
        pid_file = self.run_dir / f"llama-server-{self.port}.pid"
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def config(server: str, base_url: str | None, stream: bool) -> dict[str, Any]:
    common = {"depth": 1, "max_tasks": 4, "breadth": 4, "retry_backoff_seconds": 0,
              "stream_plan": stream}
    if server == "llama":
        return {**common, "model": "openai:smollm2", "max_tokens": 24, "temperature": 0,
                "model_options": {"base_url": base_url}}
    return {**common, "model": "simulated", "model_options": {"latency_s": 2.0}}


async def measure(server: str, base_url: str | None, repeats: int) -> dict[str, list[float]]:
    from promptdag.api import arun_objective

    seconds: dict[str, list[float]] = {"streamed": [], "whole plan": []}
    for repeat in range(repeats):
        for label, stream in (("streamed", True), ("whole plan", False)):
            result = await arun_objective(f"{OBJECTIVE} ({repeat})", CONTEXT,
                                          config(server, base_url, stream), fresh=True)
            if not (result.planning_started_at and result.first_task_started_at):
                raise SystemExit(f"{label}: no task started: {result.error}")
            wait = result.first_task_started_at - result.planning_started_at
            seconds[label].append(wait.total_seconds())
            print(f"  {label}: {wait.total_seconds():.2f} s (planning took "
                  f"{_planning(result):.2f} s, plan streamed: {result.plan_streamed})",
                  file=sys.stderr)
    return seconds


def _planning(result: Any) -> float:
    if result.planning_finished_at and result.planning_started_at:
        return float((result.planning_finished_at - result.planning_started_at).total_seconds())
    return float("nan")


def report(server: str, seconds: dict[str, list[float]]) -> str:
    streamed = statistics.median(seconds["streamed"])
    whole = statistics.median(seconds["whole plan"])
    lines = [
        f"Planning start -> first task start, {server} model, median of "
        f"{len(seconds['streamed'])} run(s) each (`python -m benchmarks.streamed_planning "
        f"--server {server}`):",
        "",
        "| plan | seconds to the first task | runs |",
        "| --- | --- | --- |",
        f"| streamed | {streamed:.2f} | {', '.join(f'{s:.2f}' for s in seconds['streamed'])} |",
        f"| whole plan | {whole:.2f} | {', '.join(f'{s:.2f}' for s in seconds['whole plan'])} |",
        "",
        f"Ratio whole plan / streamed: **{whole / streamed:.2f}x** sooner with streaming.",
    ]
    if hasattr(os, "getloadavg"):
        lines.append(f"(load average at the end: {os.getloadavg()[0]:.2f})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streamed_planning",
                                     description=__doc__)
    default = "llama" if (LLM_DIR / "start.sh").exists() else "simulated"
    parser.add_argument("--server", choices=["llama", "simulated"], default=default)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    from benchmarks.server import LocalServer

    os.environ.setdefault("OPENAI_API_KEY", "sk-local")
    with LocalServer(startup_timeout=300) as prefect_server:
        os.environ.update(PREFECT_API_URL=prefect_server.url, PREFECT_HOME=prefect_server.home,
                          PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL")
        if args.server == "llama":
            with LlamaServer() as base_url:
                seconds = asyncio.run(measure("llama", base_url, args.repeats))
        else:
            seconds = asyncio.run(measure("simulated", None, args.repeats))
    text = report(args.server, seconds)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"streamed-planning-{args.server}.md").write_text(text)
    if args.json:
        args.json.write_text(json.dumps(seconds, indent=2))


if __name__ == "__main__":
    main()
