"""Resume: finished tasks are reused by later runs of the same work; only what changed reruns."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from promptdag.api import arun


def chain(**config) -> dict:
    def task(name: str, prompt: str, deps: list[str]) -> dict:
        return {"name": name, "prompt": prompt, "depends_on": deps, "model": "probe:x"}

    return {"name": "resumable", "config": {"retry_backoff_seconds": 0, **config},
            "tasks": [task("A", "first", []), task("B", "second", ["A"]),
                      task("C", "third", ["B"]), task("Side", "aside", [])]}


async def test_a_rerun_reuses_every_finished_task_without_calling_the_model(probe):
    first = await arun(chain())
    assert len(probe.calls) == 4 and not any(t.reused for t in first.tasks)
    probe.calls.clear()
    second = await arun(chain())
    assert probe.calls == []
    assert all(t.reused and t.attempts == 0 for t in second.tasks)
    assert second.results == first.results


async def test_changing_a_prompt_reruns_that_task_and_its_dependents_only(probe):
    await arun(chain())
    probe.calls.clear()
    changed = chain()
    changed["tasks"][1]["prompt"] = "second, reworded"
    result = await arun(changed)
    assert sorted(c.task for c in probe.calls) == ["B", "C"]
    assert {t.name: t.reused for t in result.tasks} == {"A": True, "B": False, "C": False,
                                                        "Side": True}


async def test_fresh_ignores_earlier_results(probe):
    await arun(chain())
    probe.calls.clear()
    result = await arun(chain(reuse_results=False))
    assert len(probe.calls) == 4 and not any(t.reused for t in result.tasks)


async def test_after_a_failure_only_the_missing_work_runs(probe):
    failing = chain(failure_mode="skip_dependents")
    failing["tasks"][2]["model_options"] = {"fail_tasks": ["C"]}
    first = await arun(failing)
    assert first.task("C").status == "failed"
    probe.calls.clear()
    fixed = copy.deepcopy(failing)
    fixed["tasks"][2]["model_options"] = {}
    second = await arun(fixed)
    assert [c.task for c in probe.calls] == ["C"]
    assert second.status == "completed"


def test_a_killed_cli_run_resumes_with_the_finished_tasks_reused(prefect_api: str,
                                                                 tmp_path: Path):
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps({
        "name": "killed midway",
        "config": {"breadth": 1, "model_options": {"latency_s": 1.5}},
        "tasks": [{"name": f"step {i}", "prompt": f"step {i} of the work"}
                  for i in range(1, 5)],
    }))
    # The session's API (no ephemeral start-up per run); results in this test's own storage.
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "storage")}
    cli = [sys.executable, "-m", "promptdag.cli", "run", str(spec)]
    proc = subprocess.Popen(cli, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    finished: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if " ok step " in line:
            finished.append(line.split(" ok ")[1].split(" (")[0])
        if len(finished) == 2 or not line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert finished == ["step 1", "step 2"]

    done = subprocess.run([*cli, "--json"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    tasks = {t["name"]: t for t in json.loads(done.stdout)["tasks"]}
    assert [tasks[f"step {i}"]["reused"] for i in range(1, 5)] == [True, True, False, False]
    assert [tasks[f"step {i}"]["attempts"] for i in range(1, 5)] == [0, 0, 1, 1]
