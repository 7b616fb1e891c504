"""`promptdag objective --review` on the command line: on a terminal it shows the plan and asks
(here: edit in $EDITOR); elsewhere it says how to answer, and `promptdag reject` from another
shell ends the run."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.flows.test_cli_run import promptdag

EDITOR = """import json, sys
tasks = [{"name": "Edited step", "prompt": "Do the edited step", "depends_on": []}]
open(sys.argv[1], "w").write(json.dumps(tasks))
"""


def test_a_terminal_shows_the_plan_and_runs_the_plan_edited_in_the_editor(
    prefect_api: str, tmp_path: Path,
) -> None:
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    master, slave = pty.openpty()
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path), "TERM": "xterm-256color",
           "EDITOR": f"{sys.executable} {editor}"}
    env.pop("VISUAL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "promptdag.cli", "objective", "Plan a picnic", "--review",
         "--json"], stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    screen, answered, deadline = b"", False, time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            screen += os.read(master, 65536)
        except OSError:
            break
        if not answered and b"[r]eject: " in screen:
            os.write(master, b"e\n")
            answered = True
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    code = process.wait(timeout=60)
    os.close(master)
    text = screen.decode(errors="replace")
    assert code == 0, text + stdout
    assert "Plan for round 1" in text and "estimated time:" in text
    result = json.loads(stdout)
    assert [t["name"] for t in result["rounds"][0]["plan"]["tasks"]] == ["Edited step"]
    assert result["rounds"][0]["edited"] is True


def test_without_a_terminal_it_says_how_to_answer_and_reject_ends_the_run(
    prefect_api: str, tmp_path: Path,
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "promptdag.cli", "objective", "Plan a party", "--review"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        text=True)
    assert process.stderr is not None
    run_id = None
    for line in process.stderr:  # ends when the run does
        found = re.search(r"`promptdag reject ([0-9a-f-]{36})`", line)
        if found and run_id is None:
            run_id = found.group(1)
            rejected = promptdag(prefect_api, tmp_path, "reject", run_id, "--reason", "later")
            assert rejected.returncode == 0, rejected.stderr
    assert run_id is not None
    assert process.stdout is not None
    stdout = process.stdout.read()
    assert process.wait(timeout=60) == 1
    assert "FAILED after 0 round(s) (stop: rejected)" in stdout
    assert "rejected at review: later" in stdout
