"""Fan-out: a task runs once per item of a list an upstream task returned, each instance its
own Prefect task run under the workflow's breadth, and its dependents get every result in item
order. Real Prefect, the simulated model for structured outlines, the probe for timings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from promptdag.api import arun
from tests.flows.test_cli_run import promptdag

SECTIONS = ["Insulation", "Heat pumps", "Solar thermal", "District heating", "Storage"]
OUTLINE_SCHEMA = {
    "type": "object",
    "properties": {"sections": {"type": "array", "items": {"type": "string"}}},
    "required": ["sections"],
}


def outline(sections: list[Any], **fields: Any) -> dict:
    return {"name": "Outline", "prompt": "Outline a report on home heating.",
            "output_schema": OUTLINE_SCHEMA,
            "model_options": {"outputs": {"Outline": {"sections": sections}}}, **fields}


def report(sections: list[Any], breadth: int = 2, **research: Any) -> dict:
    return {
        "name": "fan-out report",
        "config": {"breadth": breadth, "retry_backoff_seconds": 0},
        "tasks": [
            outline(sections),
            {"name": "Research", "for_each": "{{ Outline.sections }}", "model": "probe:x",
             "prompt": "Research section {{ index }}: {{ item }}",
             "model_options": {"latency_s": 0.05}, **research},
            {"name": "Write", "prompt": "Write the report from:\n{{ Research }}",
             "model": "probe:x"},
        ],
    }


async def test_n_sections_fan_out_under_breadth_and_join_in_order(probe):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # 1 s calls: two overlap even when a busy machine starts one late (as 0.05 s ones may not)
    result = await arun(report(SECTIONS, breadth=2, model_options={"latency_s": 1.0}))
    assert result.status == "completed"
    names = [f"Research[{i}]: {s}" for i, s in enumerate(SECTIONS)]
    assert [t.name for t in result.tasks] == ["Outline", *names, "Research", "Write"]
    for i, name in enumerate(names):
        task = result.task(name)
        assert (task.status, task.fan_out, task.item, task.index) == (
            "completed", "Research", SECTIONS[i], i)
        assert task.prompt == f"Research section {i}: {SECTIONS[i]}"  # the outline not appended
        assert task.usage.input_tokens == 1
    assert probe.max_overlap() == 2  # the instances ran under the workflow's breadth
    write = probe.call("Write")
    assert all(write.start >= probe.call(name).end for name in names)
    joined = result.task("Research")
    assert joined.result == "\n\n".join(
        f"{i + 1}. {result.task(name).result}" for i, name in enumerate(names))
    assert joined.output == {"outputs": [result.task(name).result for name in names]}
    assert (result.task("Write").prompt or "").endswith(joined.result or "?")
    assert result.summary.total_tasks == 8 and result.summary.fan_out_count == 5
    seen: set[str] = set()
    async with get_client() as client:  # each instance is its own, named Prefect task run
        for _ in range(480):  # task runs reach the API through events, a moment later (a
            # minute when the server's recorder retries a flush SQLite refused): up to 240 s
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[result.flow_run_id])))
            seen = {run.name for run in runs}
            if set(names) <= seen:
                break
            await asyncio.sleep(0.5)
    assert set(names) <= seen


async def test_a_map_after_a_map_reads_structured_items_and_outputs(probe):
    summary = {"type": "object", "properties": {"summary": {"type": "string"},
                                                "words": {"type": "integer"}}}
    spec = {
        "name": "map after map",
        "config": {"breadth": 3},
        "tasks": [
            {**outline([{"title": "Heat pumps", "angle": "cost"},
                        {"title": "Insulation", "angle": "comfort"}]),
             "output_schema": {"type": "object", "properties": {"sections": {
                 "type": "array", "items": {"type": "object", "properties": {
                     "title": {"type": "string"}, "angle": {"type": "string"}}}}}}},
            {"name": "Research", "for_each": "{{ Outline.sections }}", "output_schema": summary,
             "prompt": "Research {{ item.title }} for {{ item.angle }} (part {{ index }})"},
            {"name": "Check", "for_each": "{{ Research.outputs }}",
             "prompt": "Check this summary: {{ item.summary }}", "model": "probe:x"},
            {"name": "Write", "prompt": "All summaries: {{ Research.outputs }}\n{{ Check }}",
             "model": "probe:x"},
        ],
    }
    result = await arun(spec)
    assert result.status == "completed"
    first = result.task("Research[0]: Heat pumps")
    assert first.prompt == "Research Heat pumps for cost (part 0)"
    assert first.item == {"title": "Heat pumps", "angle": "cost"} and first.index == 0
    outputs = result.task("Research").output["outputs"]  # type: ignore[index]
    assert [o["summary"] for o in outputs] == [
        result.task("Research[0]: Heat pumps").output["summary"],  # type: ignore[index]
        result.task("Research[1]: Insulation").output["summary"]]  # type: ignore[index]
    checks = [t for t in result.tasks if t.fan_out == "Check"]
    assert [t.index for t in checks] == [0, 1]
    assert checks[0].prompt == f"Check this summary: {outputs[0]['summary']}"
    assert json.dumps(outputs, ensure_ascii=False, sort_keys=True) in (
        result.task("Write").prompt or "")
    assert [c.task for c in probe.calls][-1] == "Write"


async def test_an_empty_list_skips_the_fan_out_and_its_dependents_as_a_branch_not_taken(probe):
    result = await arun(report([]))
    assert result.status == "completed"
    research, write = result.task("Research"), result.task("Write")
    assert (research.status, research.skip_reason) == ("skipped", "condition")
    assert research.error == "skipped: for_each {{ Outline.sections }} gave no items"
    assert (write.status, write.skip_reason) == ("skipped", "condition")
    assert probe.calls == [] and result.summary.fan_out_count == 0


async def test_the_lines_of_a_text_answer_fan_out(probe):
    spec = {"name": "lines", "tasks": [
        {"name": "List", "prompt": "Name three fuels, one a line."},
        {"name": "Each", "for_each": "{{ List.lines }}", "prompt": "About: {{ item }}",
         "model": "probe:x"}]}
    result = await arun(spec)
    listed = (result.task("List").result or "").splitlines()
    instances = [t for t in result.tasks if t.fan_out == "Each"]
    assert [t.item for t in instances] == [line.strip() for line in listed if line.strip()]
    assert instances and instances[0].prompt == f"About: {instances[0].item}"


async def test_instances_keep_the_failure_mode_a_failed_one_skips_the_join(probe):
    spec = report(SECTIONS[:3], model_options={"fail_tasks": ["Research[1]: Heat pumps"]})
    result = await arun(spec)
    assert result.status == "failed"
    assert result.task("Research[1]: Heat pumps").status == "failed"
    assert {result.task(n).status for n in ("Research[0]: Insulation",
                                            "Research[2]: Solar thermal")} == {"completed"}
    assert result.task("Research").skip_reason == "upstream_failed"
    assert result.task("Write").status == "skipped"


def test_max_items_exceeded_fails_the_task_with_one_line_and_exit_1(prefect_api: str,
                                                                     tmp_path: Path):
    spec = tmp_path / "too-many.json"
    too_many = report(SECTIONS, max_items=3)
    for task in too_many["tasks"][1:]:
        task.pop("model")  # the simulated model: it runs in the CLI's own process
    spec.write_text(json.dumps(too_many))
    done = promptdag(prefect_api, tmp_path, "run", str(spec))
    assert done.returncode == 1, done.stderr
    assert "gave 5 items, more than max_items 3" in done.stdout + done.stderr
    done = promptdag(prefect_api, tmp_path, "run", str(spec), "--json", "--fresh")
    assert done.returncode == 1, done.stderr
    research = next(t for t in json.loads(done.stdout)["tasks"] if t["name"] == "Research")
    assert research["status"] == "failed"
    assert research["error"] == ("task 'Research': for_each {{ Outline.sections }} gave 5 "
                                 "items, more than max_items 3; raise max_items or ask for fewer")
    assert "Traceback" not in done.stderr


def test_a_fan_out_killed_half_way_resumes_without_calling_a_finished_instance(
        prefect_api: str, tmp_path: Path):
    spec = tmp_path / "slow-fan-out.json"
    slow = report(SECTIONS[:4], breadth=1)
    slow["config"]["model_options"] = {"latency_s": 1.0}
    for task in slow["tasks"][1:]:
        task.pop("model")  # the simulated model: it runs in the CLI's own process
        task.pop("model_options", None)
    spec.write_text(json.dumps(slow))
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "storage"),
           "PREFECT_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "promptdag.cli", "run", str(spec)]
    proc = subprocess.Popen(cli, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    finished: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(finished) < 2:
        line = proc.stderr.readline()
        if not line:
            break
        if " ok Research[" in line:
            finished.append(line.split(" ok ")[1].split(" (")[0])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert finished == ["Research[0]: Insulation", "Research[1]: Heat pumps"]

    done = subprocess.run([*cli, "--json"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert "resuming run" in done.stderr
    tasks = {t["name"]: t for t in json.loads(done.stdout)["tasks"]}
    assert [(tasks[f"Research[{i}]: {s}"]["reused"], tasks[f"Research[{i}]: {s}"]["attempts"])
            for i, s in enumerate(SECTIONS[:4])] == [(True, 0), (True, 0), (False, 1), (False, 1)]
    assert tasks["Outline"]["reused"] and not tasks["Write"]["reused"]


async def test_a_fan_out_inside_a_sub_workflow(probe):
    inner = report(SECTIONS[:2])
    spec = {"name": "outer", "tasks": [
        {"name": "Section report", "workflow": inner},
        {"name": "Edit", "prompt": "Edit {{ Section report }}", "model": "probe:x"}]}
    result = await arun(spec)
    assert result.status == "completed"
    sub = result.task("Section report").workflow
    assert sub is not None and sub.summary.fan_out_count == 2
    assert [t.name for t in sub.tasks if t.fan_out] == ["Research[0]: Insulation",
                                                          "Research[1]: Heat pumps"]


async def test_a_fan_out_in_a_batch_runs_per_row(probe):
    spec = {
        "name": "batch fan-out",
        "config": {"breadth": 4},
        "tasks": [
            {"name": "Outline", "prompt": "Outline {{ topic }} in three lines."},
            {"name": "Research", "for_each": "{{ Outline.lines }}", "model": "probe:x",
             "prompt": "Research {{ item }} for {{ topic }}"},
            {"name": "Write", "prompt": "Write {{ Research }}", "model": "probe:x"},
        ],
    }
    rows = [{"id": "a", "topic": "heat pumps"}, {"id": "b", "topic": "insulation"}]
    result = await arun(spec, data=rows)
    assert result.status == "completed"
    assert [(r.id, r.status) for r in result.rows or []] == [("a", "completed"),
                                                             ("b", "completed")]
    for row in ("a", "b"):
        instances = [t for t in result.tasks if t.fan_out == f"[{row}] Research"]
        assert instances and all(t.name.startswith(f"[{row}] Research[") for t in instances)
        assert all(t.status == "completed" for t in instances)
        row_result = next(r for r in result.rows or [] if r.id == row)
        write = result.task(f"[{row}] Write")
        assert row_result.results == {"Write": write.result}
        # the row's usage counts its instances: outline + instances + write
        assert row_result.usage.output_tokens == sum(
            t.usage.output_tokens for t in result.tasks
            if t.name.startswith(f"[{row}] ") or t.fan_out == f"[{row}] Research")


def test_the_outline_research_example_runs_offline_and_counts_its_instances(
        prefect_api: str, tmp_path: Path):
    example = Path(__file__).parents[2] / "examples" / "outline_research.yaml"
    done = promptdag(prefect_api, tmp_path, "run", str(example))  # plain progress: a pipe
    assert done.returncode == 0, done.stderr
    assert "[7/7] ok Write" in done.stderr  # the total grew as the instances appeared
    assert "7/7 completed, 4 from fan-outs, 0 failed" in done.stdout
    titles = ["Insulation", "Heat pumps", "Solar thermal", "District heating"]
    assert all(f"ok Research[{i}]: {t}" in done.stderr for i, t in enumerate(titles))
