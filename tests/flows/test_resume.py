"""Run identity: a new run calls the models afresh; a run that did not complete is resumed
(by a re-run, `promptdag retry` or a Prefect flow-run retry) reusing only its own finished
tasks; `cache: true` answers identical requests once across runs."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from promptdag.api import arun


def chain(**config: Any) -> dict:
    def task(name: str, prompt: str, deps: list[str]) -> dict:
        return {"name": name, "prompt": prompt, "depends_on": deps, "model": "probe:x"}

    return {"name": "resumable", "config": {"retry_backoff_seconds": 0, **config},
            "tasks": [task("A", "first", []), task("B", "second", ["A"]),
                      task("C", "third", ["B"]), task("Side", "aside", [])]}


def failing_c(**config: Any) -> dict:
    spec = chain(failure_mode="skip_dependents", **config)
    spec["tasks"][2]["model_options"] = {"fail_tasks": ["C"]}
    return spec


async def test_every_new_run_calls_the_models(probe):
    first = await arun(chain())
    second = await arun(chain())
    assert len(probe.calls) == 8
    assert not any(t.reused for t in first.tasks + second.tasks)
    assert second.summary.reused_count == 0 and second.flow_run_id != first.flow_run_id


async def test_a_rerun_after_a_failure_resumes_it_and_runs_only_the_missing_work(probe):
    first = await arun(failing_c())
    assert first.task("C").status == "failed"
    probe.calls.clear()
    fixed = failing_c()
    fixed["tasks"][2]["model_options"] = {}
    notices: list[str] = []
    second = await arun(fixed, on_notice=notices.append)
    assert [c.task for c in probe.calls] == ["C"]
    assert second.status == "completed"
    assert notices == [
        f"resuming run {first.flow_run_id} (failed): the tasks it finished are reused, not asked "
        "again",
        f"resumed run {first.flow_run_id}: 3/4 tasks reused",  # what was, counted after the run
    ]
    assert {t.name: (t.reused, t.attempts) for t in second.tasks} == {
        "A": (True, 0), "B": (True, 0), "C": (False, 1), "Side": (True, 0)}
    assert second.summary.reused_count == 3
    assert second.usage.input_tokens == 1 and second.saved_usage.input_tokens == 3
    probe.calls.clear()  # the resumed run completed: the next run is a new one
    third = await arun(fixed)
    assert len(probe.calls) == 4 and third.summary.reused_count == 0


async def test_a_changed_prompt_reruns_that_task_and_its_dependents_only(probe):
    await arun(failing_c())  # C fails: the next run resumes this one
    probe.calls.clear()
    changed = failing_c()
    changed["tasks"][2]["model_options"] = {}
    changed["tasks"][1]["prompt"] = "second, reworded"
    result = await arun(changed)
    assert sorted(c.task for c in probe.calls) == ["B", "C"]
    assert {t.name: t.reused for t in result.tasks} == {"A": True, "B": False, "C": False,
                                                        "Side": True}


async def test_fresh_starts_over_instead_of_resuming(probe):
    await arun(failing_c())
    probe.calls.clear()
    fixed = failing_c(reuse_results=False)
    fixed["tasks"][2]["model_options"] = {}
    result = await arun(fixed)
    assert len(probe.calls) == 4 and not any(t.reused for t in result.tasks)


async def test_cache_true_answers_identical_requests_once_across_runs(probe):
    first = await arun(chain(cache=True))
    second = await arun(chain(cache=True))
    assert len(probe.calls) == 4
    assert all(t.reused and t.attempts == 0 for t in second.tasks)
    assert second.results == first.results
    assert second.summary.reused_count == 4 and second.saved_usage.input_tokens == 4
    probe.calls.clear()  # a task may opt out of the workflow's cache
    spec = chain(cache=True)
    spec["tasks"][3]["cache"] = False
    await arun(spec)
    assert [c.task for c in probe.calls] == ["Side"]


async def test_cached_answers_expire(probe):
    await arun(chain(cache=True, cache_expiration=1))
    await asyncio.sleep(1.2)
    again = await arun(chain(cache=True, cache_expiration=1))
    assert len(probe.calls) == 8 and not any(t.reused for t in again.tasks)


def _kill_after(cli: list[str], env: dict[str, str], finished_wanted: int) -> list[str]:
    proc = subprocess.Popen(cli, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    finished: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if " ok step " in line:
            finished.append(line.split(" ok ")[1].split(" (")[0])
        if len(finished) == finished_wanted or not line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return finished


def _slow_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps({
        "name": "killed midway",
        "config": {"breadth": 1, "model_options": {"latency_s": 1.5}},
        "tasks": [{"name": f"step {i}", "prompt": f"step {i} of the work"}
                  for i in range(1, 5)],
    }))
    return spec


def _env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    # The session's API (no ephemeral start-up per run); results in this test's own storage.
    return {**os.environ, "PREFECT_API_URL": prefect_api,
            "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "storage"),
            "PREFECT_HOME": str(tmp_path / "home")}


def test_a_killed_cli_run_is_resumed_by_a_plain_rerun(prefect_api: str, tmp_path: Path):
    env = _env(prefect_api, tmp_path)
    cli = [sys.executable, "-m", "promptdag.cli", "run", str(_slow_spec(tmp_path))]
    assert _kill_after(cli, env, 2) == ["step 1", "step 2"]

    done = subprocess.run([*cli, "--json"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    # the count is what was reused (the killed CLI's last state report may never have reached
    # the server: a count of the server's finished tasks could say 1 here)
    # The killed run was left Running; the rerun saw its process gone and marked it Crashed
    # (flows/orphans.py) before resuming it, without a `promptdag retry`.
    seen = re.search(r"resuming run (\S+) \(crashed\): the tasks it finished are reused",
                     done.stderr)
    assert seen, done.stderr
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        killed = client.read_flow_run(uuid.UUID(seen.group(1)))
    assert killed.state_type is not None and killed.state_type.value == "CRASHED"
    assert "is gone: marked Crashed by promptdag" in (killed.state.message or "")
    assert re.search(r"resumed run \S+: 2/4 tasks reused", done.stderr)
    tasks = {t["name"]: t for t in json.loads(done.stdout)["tasks"]}
    assert [tasks[f"step {i}"]["reused"] for i in range(1, 5)] == [True, True, False, False]
    assert [tasks[f"step {i}"]["attempts"] for i in range(1, 5)] == [0, 0, 1, 1]

    again = subprocess.run([*cli, "--json"], capture_output=True, text=True, env=env,
                           timeout=180)  # the resumed run completed: a new run, all afresh
    assert again.returncode == 0 and "resuming" not in again.stderr
    assert not any(t["reused"] for t in json.loads(again.stdout)["tasks"])


def test_promptdag_retry_resumes_a_killed_run_as_the_same_flow_run(prefect_api: str,
                                                                 tmp_path: Path):
    env = _env(prefect_api, tmp_path)
    spec = _slow_spec(tmp_path)
    cli = [sys.executable, "-m", "promptdag.cli"]
    assert _kill_after([*cli, "run", str(spec)], env, 1) == ["step 1"]
    other = subprocess.run([*cli, "run", str(spec), "--fresh", "--json"], capture_output=True,
                           text=True, env=env, timeout=180)  # a new run, not the killed one
    assert other.returncode == 0, other.stderr
    killed = _latest_run_id(prefect_api, "killed midway", skip=1)

    retried = subprocess.run([*cli, "retry", killed, "--json"], capture_output=True,
                             text=True, env=env, timeout=180)
    assert retried.returncode == 0, retried.stderr
    result = json.loads(retried.stdout)
    assert result["flow_run_id"] == killed
    reused = [t["reused"] for t in result["tasks"]]
    assert reused == [True, False, False, False]  # its own step 1 only, not the other run's


def _latest_run_id(prefect_api: str, name: str, skip: int = 0) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> str:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=skip + 1)
        return str(runs[skip].id)

    return asyncio.run(read())


async def test_a_prefect_flow_run_retry_reuses_the_runs_own_tasks(probe):
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from promptdag.flows.lost_api import run_flow_run
    from promptdag.flows.run_workflow import run_workflow

    first = await arun(failing_c(reuse_results=False))
    assert first.status == "failed"
    async with get_client() as client:  # what the UI's Retry button does
        await client.set_flow_run_state(first.flow_run_id, Scheduled(name="AwaitingRetry"),
                                        force=True)
        flow_run = await client.read_flow_run(first.flow_run_id)
    probe.calls.clear()
    state = await run_flow_run(run_workflow, flow_run, dict(flow_run.parameters))
    again = await state.aresult(raise_on_failure=False)
    assert [c.task for c in probe.calls] == ["C"]  # fails again: C is still set to fail
    assert {t.name: t.reused for t in again.tasks if t.status == "completed"} == {
        "A": True, "B": True, "Side": True}
    assert again.flow_run_id == first.flow_run_id


async def test_two_simultaneous_runs_of_one_spec_make_each_call_once(probe):
    spec = {"name": "wide", "config": {"breadth": 10, "model": "probe:x",
                                       "model_options": {"latency_s": 0.05}},
            "tasks": [{"name": f"t{i}", "prompt": f"task {i}", "depends_on": []}
                      for i in range(30)]}
    first, second = await asyncio.gather(arun(copy.deepcopy(spec)), arun(copy.deepcopy(spec)))
    assert first.status == second.status == "completed"
    assert len(probe.calls) == 30
    assert first.results == second.results
    assert first.summary.reused_count + second.summary.reused_count == 30


async def test_an_objective_retry_reuses_its_plan_reflection_and_finished_tasks(probe):
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from promptdag.api import arun_objective
    from promptdag.engine.objective import ObjectiveResult
    from promptdag.flows.lost_api import run_flow_run
    from promptdag.flows.plan_execute_reflect import plan_execute_reflect

    roles = {"planner_model": "simulated", "reflector_model": "simulated",
             "synthesiser_model": "simulated"}
    first = await arun_objective("Assess wind power", config={
        "retry_backoff_seconds": 0, "model": "probe:x", **roles})
    assert first.status == "completed" and probe.calls
    async with get_client() as client:  # Prefect's retry of the same flow run
        await client.set_flow_run_state(first.flow_run_id, Scheduled(), force=True)
        flow_run = await client.read_flow_run(first.flow_run_id)
    probe.calls.clear()
    state = await run_flow_run(plan_execute_reflect, flow_run, dict(flow_run.parameters))
    again = ObjectiveResult.model_validate(await state.aresult(raise_on_failure=False))
    assert probe.calls == []  # no task asked again
    assert again.final_answer == first.final_answer
    # A finished round is a completed subflow: Prefect's retry takes its result as it is.
    assert [r.result.results for r in again.rounds if r.result] == [
        r.result.results for r in first.rounds if r.result]
    wanted = {"plan (round 1)", "reflect (round 1)", "synthesise answer"}
    assert wanted <= await cached_task_runs(flow_run.id, wanted)


def test_retry_refuses_a_completed_run_and_a_bad_id_with_one_line(prefect_api: str,
                                                                  tmp_path: Path):
    env = _env(prefect_api, tmp_path)
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"name": "tiny", "tasks": [{"name": "a", "prompt": "p"}]}))
    cli = [sys.executable, "-m", "promptdag.cli"]
    done = subprocess.run([*cli, "run", str(spec), "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    run_id = json.loads(done.stdout)["flow_run_id"]
    again = subprocess.run([*cli, "retry", run_id], capture_output=True, text=True, env=env,
                           timeout=120)
    assert (again.returncode, again.stderr.strip()) == (
        2, f"promptdag: error: run {run_id} completed: nothing to retry (run the spec again "
        "for a new run)")
    bad = subprocess.run([*cli, "retry", "nope"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "promptdag: error: 'nope' is not a run id (a UUID, as the run printed)")


def test_two_cli_runs_started_together_pay_for_each_call_once(prefect_api: str, tmp_path: Path):
    env = _env(prefect_api, tmp_path)
    spec = tmp_path / "wide.json"
    spec.write_text(json.dumps({
        "name": "wide", "config": {"breadth": 10, "model_options": {"latency_s": 0.3}},
        "tasks": [{"name": f"t{i}", "prompt": f"task {i}", "depends_on": []}
                  for i in range(30)]}))
    cli = [sys.executable, "-m", "promptdag.cli", "run", str(spec), "--json"]
    runs = [subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env) for _ in range(2)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        results.append(json.loads(out))
    calls = sum(t["attempts"] for r in results for t in r["tasks"])
    assert calls == 30  # issue 13 measured 56 before
    answers = [{t["name"]: t["result"] for t in r["tasks"]} for r in results]
    assert answers[0] == answers[1]


async def test_a_rerun_of_an_objective_that_failed_resumes_it_without_planning_again(probe):

    from promptdag.api import arun_objective

    config = {"retry_backoff_seconds": 0, "model": "probe:x", "planner_model": "simulated",
              "reflector_model": "simulated", "synthesiser_model": "simulated",
              "model_options": {"permanent": True}}
    first = await arun_objective("Assess tidal power", config=config)
    assert first.stop_reason == "failed"  # every task of round 1 failed
    notices: list[str] = []
    second = await arun_objective("Assess tidal power", config=config, on_notice=notices.append)
    assert notices == [f"resuming run {first.flow_run_id} (failed): the tasks it finished are "
                       "reused, not asked again"]
    assert second.rounds[0].plan == first.rounds[0].plan
    assert "plan (round 1)" in await cached_task_runs(second.flow_run_id, {"plan (round 1)"})


async def cached_task_runs(flow_run_id: Any, wanted: set[str]) -> set[str]:
    """The names of the flow run's Cached task runs, once `wanted` are among them or 240 s
    passed. The server records task-run states from their events, later (and, when SQLite is
    busy, after a retry a minute on): a test waits for the record, it does not read it once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    give_up = time.monotonic() + 240  # a wait, not a measure: it ends when the record is there
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            cached = {t.name for t in runs if t.state_name == "Cached"}
            if wanted <= cached or time.monotonic() > give_up:
                return cached
            await asyncio.sleep(0.5)
