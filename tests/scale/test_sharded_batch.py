"""A sharded batch on the "At scale" set-up of docs/scaling.md: a Prefect server on PostgreSQL,
prefect.yaml deployed, two process workers on one pool.

`promptdag submit SPEC --data rows.jsonl --shards 2` makes two runs of `run-workflow/workflow`;
each worker takes one (they run one flow run at a time), both run at once, and
`promptdag result RUN RUN --output rows.jsonl` gathers every row, in row order.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun

from promptdag.engine.results import WorkflowResult
from tests.deployments.conftest import ROOT, Server
from tests.scale.conftest import SIMULATED_IN_FLIGHT, Cluster

pytestmark = [pytest.mark.deployments, pytest.mark.timeout(600)]  # a cluster, two workers

ROWS = 40
LATENCY = 0.5  # a shard alone takes 7.5 s or more: the other worker's process, slower
# to start on a busy machine, still starts its shard before the first one ends
SPEC = {
    "name": "Ticket Triage",
    "config": {"breadth": 16, "model": "simulated", "model_options": {"latency_s": LATENCY},
               "retry_backoff_seconds": 0},
    "tasks": [
        {"name": "Summarise", "prompt": "Summarise this ticket: {{ ticket }}"},
        {"name": "Classify", "prompt": "Classify the issue in {{ Summarise }}"},
        {"name": "Reply", "prompt": "Draft a reply to {{ customer }} about {{ Classify }}"},
    ],
}


def write_inputs(folder: Path) -> tuple[Path, Path]:
    spec, rows = folder / "triage.json", folder / "tickets.jsonl"
    spec.write_text(json.dumps(SPEC))
    rows.write_text("".join(
        json.dumps({"id": f"T-{i:03d}", "customer": f"customer {i}",
                    "ticket": f"order {i} arrived damaged"}) + "\n"
        for i in range(ROWS)
    ))
    return spec, rows


async def shard_runs(tag: str) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )


async def global_limit(name: str) -> Any:
    async with get_client() as client:
        return await client.read_global_concurrency_limit_by_name(name)


def shard_results(server: Server, run_ids: list[str]) -> list[WorkflowResult]:
    """Each shard's whole result (its tasks' times), read as a user would."""
    results = []
    for run_id in run_ids:
        done = server.promptdag("result", run_id, "--json", "--no-wait")
        assert done.returncode == 0, done.stdout + done.stderr
        results.append(WorkflowResult.model_validate_json(done.stdout))
    return results


def shards_run_by(cluster: Cluster) -> dict[str, list[str]]:
    """Worker -> the flow runs (by the name they were created with) it started a process for.

    A worker also logs "submitting" for a run another worker has just taken (it loses the
    race to mark it Pending); "submitted to infrastructure" only follows a won race.
    """
    found = re.compile(r"Flow run '([^']+)' submitted to infrastructure")
    return {name: found.findall(log.read_text(errors="replace"))
            for name, log in cluster.worker_logs.items()}


def test_sharded_batch_runs_on_both_workers_and_gathers_every_row(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec, rows = write_inputs(tmp_path)
    server = cluster.server

    submitted = server.promptdag("submit", str(spec), "--data", str(rows), "--shards", "2")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    run_ids = submitted.stdout.split()
    assert len(run_ids) == 2, submitted.stdout
    tag = next(word for word in submitted.stderr.split() if word.startswith("batch:"))

    output = tmp_path / "rows.jsonl"
    gathered = server.promptdag("result", *run_ids, "--output", str(output), "--timeout", "240",
                                timeout=270)
    assert gathered.returncode == 0, gathered.stdout + gathered.stderr
    assert f"rows: {ROWS} completed, 0 failed of {ROWS}" in gathered.stderr

    lines: list[dict[str, Any]] = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == ROWS
    assert [line["index"] for line in lines] == list(range(ROWS))
    assert [line["id"] for line in lines] == [f"T-{i:03d}" for i in range(ROWS)]
    assert all(line["status"] == "completed" and line["error"] is None for line in lines)
    assert all(line["results"]["Reply"] for line in lines)  # the row's final task
    assert all(line["usage"]["output_tokens"] > 0 for line in lines)
    # rows differ: each row's fields reached its prompts
    assert len({line["results"]["Reply"] for line in lines}) == ROWS

    # the server keeps them in PostgreSQL
    stored = cluster.postgres.psql("select count(*) from flow_run where "
                                   f"id in ('{run_ids[0]}', '{run_ids[1]}')")
    assert stored == "2"
    runs = asyncio.run(shard_runs(tag))
    assert sorted(str(r.id) for r in runs) == sorted(run_ids)
    assert all(r.state_type and r.state_type.value == "COMPLETED" for r in runs)
    assert sorted(r.parameters["row_offset"] for r in runs) == [0, ROWS // 2]
    # Each worker took one shard, and the two ran at the same time.
    ran = shards_run_by(cluster)
    assert sorted(ran.values()) == [["Ticket Triage [shard 1/2]"], ["Ticket Triage [shard 2/2]"]], (
        ran
    )
    first, second = sorted(runs, key=lambda r: r.start_time or 0)
    assert first.start_time and first.end_time and second.start_time
    assert second.start_time < first.end_time, "the shards ran one after the other"

    # The provider limit held across both workers: one limit object in the server, and the
    # calls of both shards together took at least calls x latency / limit.
    limit = asyncio.run(global_limit("promptdag:simulated"))
    assert limit.limit == SIMULATED_IN_FLIGHT
    tasks = [t for result in shard_results(server, run_ids) for t in result.tasks]
    assert len(tasks) == ROWS * 3
    span = (max(t.finished_at for t in tasks if t.finished_at)
            - min(t.started_at for t in tasks if t.started_at)).total_seconds()
    assert span >= len(tasks) * LATENCY / SIMULATED_IN_FLIGHT, span


def test_the_readme_recipe_as_written(cluster: Cluster, tmp_path: Path) -> None:
    """docs/scaling.md's "At scale", step 4, with its example files: every ticket gets a reply
    line."""
    server = cluster.server
    submitted = server.promptdag("submit", "examples/support_triage.yaml", "--data",
                                 "examples/data/tickets.jsonl", "--shards", "2")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    output = tmp_path / "replies.jsonl"
    gathered = server.promptdag("result", *submitted.stdout.split(), "--output", str(output),
                                "--timeout", "240", timeout=270)
    assert gathered.returncode == 0, gathered.stdout + gathered.stderr
    expected = [json.loads(line)["id"] for line in
                (ROOT / "examples/data/tickets.jsonl").read_text().splitlines() if line.strip()]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == expected
    assert all(line["status"] == "completed" and line["results"]["Check tone"] for line in lines)
    # the batch's tag (on stderr) stands for its runs
    tag = next(word for word in submitted.stderr.split() if word.startswith("batch:"))
    again = server.promptdag("result", tag, "--no-wait")
    assert again.returncode == 0, again.stderr
    assert again.stdout == output.read_text()


def test_submit_wait_prints_the_first_rows_as_json_lines(cluster: Cluster) -> None:
    """`--limit` takes a trial's first rows; `--wait` gathers them at once, on stdout."""
    done = cluster.server.promptdag("submit", "examples/support_triage.yaml", "--data",
                                    "examples/data/tickets.jsonl", "--limit", "3",
                                    "--shards", "2", "--wait", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert "rows: 3 completed, 0 failed of 3" in done.stderr
