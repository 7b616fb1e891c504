"""A run whose Prefect server goes away ends within seconds, its result printed from memory,
instead of retrying the dead server for minutes (measured before: 457 s, no result, exit 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptdag.remote.local_server import (
    ServerInfo,
    free_port,
    kill_process_group,
    start_server,
)
from tests.deployments.conftest import ROOT, child_env

pytestmark = pytest.mark.deployments


def kill_the_server_mid_run(
    info: ServerInfo, args: list[str], done_marker: str, done_before_kill: int
) -> tuple[int, str, str, float]:
    """Run the CLI with `args` on the server `info`, kill -9 the server once `done_before_kill`
    stderr lines carry `done_marker`; (exit code, stdout, stderr after the kill, seconds from
    the last `done_marker` line to the CLI's exit). The run goes on without its server, and
    its result is known once its last task is done: from then on, a CLI that retried the dead
    server would take minutes; the tasks' own time before it is a busy machine's to stretch."""
    env = {**child_env(info), "PROMPTDAG_DEBUG": ""}
    cli = subprocess.Popen([sys.executable, "-m", "promptdag.cli", *args], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        assert cli.stderr is not None
        finished = 0
        while finished < done_before_kill:
            line = cli.stderr.readline()
            assert line, "the run ended before the server was killed"
            finished += done_marker in line
        os.killpg(info.pid, signal.SIGKILL)  # the server dies mid-run
        last_done, after = time.monotonic(), []
        for line in cli.stderr:  # to the CLI's exit (a hang is the suite's timeout to catch)
            after.append(line)
            if done_marker in line:
                last_done = time.monotonic()
        out, _ = cli.communicate(timeout=60)
        took, err = time.monotonic() - last_done, "".join(after)
    finally:
        kill_process_group(cli.pid, grace=1)
        kill_process_group(info.pid, grace=1)
    return cli.returncode, out, err, took


def test_a_killed_server_ends_the_cli_run_within_30_seconds_with_its_result(tmp_path: Path):
    info = start_server(port=free_port(), home=tmp_path / "home")
    spec = tmp_path / "forty.json"
    spec.write_text(json.dumps({
        "name": "lost server", "config": {"breadth": 2, "model_options": {"latency_s": 0.5}},
        "tasks": [{"name": f"t{i}", "prompt": f"task {i}", "depends_on": []}
                  for i in range(40)]}))
    returncode, out, err, took = kill_the_server_mid_run(info, ["run", str(spec)], " ok t", 16)
    assert took < 30, f"the CLI took {took:.0f} s after its last task"
    assert returncode == 1
    assert "stopped answering: this result is from memory" in err
    assert out.startswith("lost server: COMPLETED") and "(40/40 completed" in out


def test_a_killed_server_ends_a_batch_within_30_seconds_with_every_row_written(
        tmp_path: Path):
    info = start_server(port=free_port(), home=tmp_path / "home")
    spec = tmp_path / "rows.json"
    spec.write_text(json.dumps({
        "name": "lost batch", "config": {"breadth": 2, "model_options": {"latency_s": 0.3}},
        "tasks": [{"name": "Answer", "prompt": "Answer {{ question }}"}]}))
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"q {i}"}) + "\n"
                            for i in range(40)))
    output = tmp_path / "out.jsonl"
    returncode, out, err, took = kill_the_server_mid_run(
        info, ["run", str(spec), "--data", str(data), "--output", str(output)], " rows] ok ", 10)
    assert took < 30, f"the CLI took {took:.0f} s after its last row"
    assert returncode == 1, err
    assert "stopped answering: this result is from memory" in err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(f"q{i}" for i in range(40))
    assert "rows: 40 completed, 0 failed of 40" in out
