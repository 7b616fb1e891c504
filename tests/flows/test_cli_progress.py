"""What a person sees while a run goes: the live display on a terminal (driven through a
pseudo-terminal), one plain line per event elsewhere, nothing but the summary with --quiet, and
the run's UI URL at the end of the summary."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.flows.test_cli_run import promptdag

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SPEC = """name: Progress Demo
config: {breadth: 2, max_retries: 1, retry_backoff_seconds: 0,
         model_options: {latency_s: 0.3}}
tasks:
  - {name: First, prompt: a, model_options: {latency_s: 3}}
  - {name: Flaky, prompt: b, task_type: parallel, model_options: {fail_first: 1, latency_s: 0.3}}
  - {name: Broken, prompt: c, task_type: parallel, model_options: {fail_first: 9}}
  - {name: "Evil \\e[2J", prompt: d, depends_on: [First]}
"""


def on_a_terminal(api: str, storage: Path, *args: str) -> tuple[str, str, int]:
    """The CLI with stderr on a pseudo-terminal: (what the terminal got, stdout, exit code)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOCAL_STORAGE_PATH": str(storage),
           "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "promptdag.cli", *args], stdin=slave,
                               stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    screen, deadline = b"", time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    return screen.decode(errors="replace"), stdout, process.wait(timeout=30)


def test_a_terminal_gets_a_bar_running_tasks_retries_and_failures(prefect_api: str,
                                                                   tmp_path: Path):
    spec = tmp_path / "progress.yaml"
    spec.write_text(SPEC)
    raw, stdout, code = on_a_terminal(prefect_api, tmp_path, "run", str(spec))
    assert code == 1, raw + stdout
    assert "\x1b[" in raw  # redrawn in place, not line by line
    screen = ANSI.sub("", raw)
    assert "/4 tasks" in screen and "left" in screen  # the bar: done/total, estimate
    # a running task, its elapsed time (First runs 3 s: redraws to see it on a busy machine)
    assert re.search(r"running First +\d+\.\ds", screen)
    assert "retry Flaky (attempt 2): simulated transient failure" in screen
    assert "FAILED Broken: " in screen
    assert "Evil \\x1b[2J" in screen and "\x1b[2J" not in raw  # names escaped, never obeyed
    assert "Progress Demo: FAILED" in stdout
    last = stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"view: http://\S+/runs/flow-run/[0-9a-f-]{36}", last), stdout
    assert last.removeprefix("view: ").startswith(prefect_api.removesuffix("/api"))


def test_plain_lines_without_a_terminal_and_reused_tasks_marked(prefect_api: str,
                                                               tmp_path: Path):
    spec = tmp_path / "progress.yaml"
    spec.write_text(SPEC)
    first = promptdag(prefect_api, tmp_path, "run", str(spec))
    assert first.returncode == 1
    assert "\x1b" not in first.stderr  # a pipe gets plain lines
    assert "retry Flaky (attempt 2): simulated transient failure" in first.stderr
    assert re.search(r"\[\d/4\] ok First \(\d+\.\d\ds\)\n", first.stderr)
    assert re.search(r"\[\d/4\] FAILED Broken \(\d+\.\d\ds\): ", first.stderr)
    resumed = promptdag(prefect_api, tmp_path, "run", str(spec))  # resumes the failed run
    assert re.search(r"\[\d/4\] ok First \(\d+\.\d\ds\) reused\n", resumed.stderr), resumed.stderr


def test_quiet_prints_only_the_summary(prefect_api: str, tmp_path: Path):
    done = promptdag(prefect_api, tmp_path, "run", "--quiet",
                     str(Path(__file__).parents[2] / "examples" / "seed_api_request.json"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("AI Healthcare Research: COMPLETED")
    assert done.stdout.strip().splitlines()[-1].startswith("view: http")
