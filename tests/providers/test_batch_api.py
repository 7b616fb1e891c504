"""`batch_api: true`: a batch run's calls through OpenAI's Batch API and Anthropic's Message
Batches (the real SDKs against loopback servers that speak them): one batch per DAG level at the
discounted price, failed and expired lines through the normal per-call path, and a run killed
while its batch is in progress re-attaching to it instead of submitting another."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptdag.api import arun
from promptdag.llm.base import estimate_tokens
from promptdag.llm.pricing import cost_usd
from tests.providers.batch_servers import (
    USAGE,
    AnthropicBatchServer,
    BatchServer,
    OpenAIBatchServer,
)
from tests.providers.servers import ANTHROPIC_KEY, OPENAI_KEY

pytestmark = pytest.mark.usefixtures("prefect_api")

MODELS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-haiku-4-5"}
ROWS = [{"id": f"d{i}", "doc": f"document {i}"} for i in range(4)]


def server_env(vendor: str, server: BatchServer) -> dict[str, str]:
    if vendor == "openai":
        return {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": f"{server.url}/v1"}
    return {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": server.url}


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[str, BatchServer]]:
    """Each test on both vendors' wire shapes; batches polled every few milliseconds."""
    name = request.param
    server: BatchServer = (OpenAIBatchServer(OPENAI_KEY) if name == "openai"
                           else AnthropicBatchServer(ANTHROPIC_KEY)).start()
    for key, value in server_env(name, server).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROMPTDAG_BATCH_POLL_SECONDS", "0.01")
    monkeypatch.setenv("PROMPTDAG_BATCH_POLL_MAX_SECONDS", "0.05")
    yield name, server
    server.stop()


def pipeline(model: str, **config: Any) -> dict[str, Any]:
    return {
        "name": "batched",
        "config": {"model": model, "batch_api": True, "retry_backoff_seconds": 0,
                   "reuse_results": False, "model_options": {"max_tokens": 16}, **config},
        "tasks": [{"name": "Read", "prompt": "Read {{ doc }}"},
                  {"name": "Title", "prompt": "Title for: {{ Read }}"}],
    }


async def test_each_level_is_one_batch_at_half_price(vendor: tuple[str, BatchServer]):
    name, server = vendor
    result = await arun(pipeline(MODELS[name]), data=ROWS)
    assert result.status == "completed", [t.error for t in result.tasks]
    # two levels, two batches: every row's Read, then every row's Title (with its Read answer)
    assert sorted(server.batched_prompts()[0]) == [f"Read document {i}" for i in range(4)]
    assert sorted(server.batched_prompts()[1]) == [
        f"Title for: batch answer to: Read document {i}" for i in range(4)]
    assert server.direct == []  # no call outside the batches
    full = cost_usd(MODELS[name], *USAGE)
    for task in result.tasks:
        assert task.result and task.result.startswith("batch answer to: ")
        assert task.usage.input_tokens == USAGE[0] and task.usage.output_tokens == USAGE[1]
        assert task.usage.cost_usd == pytest.approx(full / 2) and full > 0
        assert task.attempts == 1
    assert [r.status for r in result.rows or []] == ["completed"] * 4


async def test_failed_lines_take_the_per_call_path(vendor: tuple[str, BatchServer]):
    name, server = vendor
    server.fail = ("Read document 2",)  # the batch errors this line (a 400 inside it)
    result = await arun(pipeline(MODELS[name]), data=ROWS)
    assert result.status == "completed", [t.error for t in result.tasks]
    assert server.direct_prompts() == ["Read document 2"]  # that line alone, called directly
    read = result.task("[d2] Read")
    assert read.result == "direct answer to: Read document 2"
    assert read.usage.cost_usd == pytest.approx(cost_usd(MODELS[name], *USAGE))  # full price
    # the row goes on in the next level's batch, with its directly answered result
    assert "Title for: direct answer to: Read document 2" in server.batched_prompts()[1]
    assert result.task("[d1] Read").result == "batch answer to: Read document 1"


@pytest.mark.parametrize("budget", [{"max_total_tokens": 500}, {"row_max_total_tokens": 130}])
async def test_a_budget_stops_batched_work(vendor: tuple[str, BatchServer],
                                           budget: dict[str, int]):
    name, server = vendor
    # Each line is held at its estimate (prompt + max_tokens 16) before it joins a batch, then
    # spends the answer's 100 + 20 tokens. Level 0 fits (a row's Read: about 20 of 130; the
    # run's four: about 80 of 500); level 1 does not (120 spent + its estimate; 480 spent + it).
    read = estimate_tokens("Read document 0") + 16
    title = estimate_tokens("Title for: batch answer to: Read document 0") + 16
    assert 4 * read <= 500 < 4 * sum(USAGE) + title and read <= 130 < sum(USAGE) + title
    result = await arun(pipeline(MODELS[name], **budget), data=ROWS)
    assert len(server.batches) == 1 and server.direct == []  # the second level never went out
    assert result.stop_reason == "budget" and result.status == "failed"
    for row in ROWS:
        assert result.task(f"[{row['id']}] Read").status == "completed"  # finished work kept
        title_task = result.task(f"[{row['id']}] Title")
        assert title_task.status == "cancelled" and title_task.attempts == 0
        assert "max_total_tokens" in str(title_task.error)
    assert result.usage.input_tokens + result.usage.output_tokens == 4 * sum(USAGE)
    assert result.usage.cost_usd == pytest.approx(4 * cost_usd(MODELS[name], *USAGE) / 2)


async def test_an_expired_batch_sends_its_unfinished_lines_per_call(
    vendor: tuple[str, BatchServer]
):
    name, server = vendor
    server.expire_after = 1  # each batch ends expired, with only its first line answered
    result = await arun(pipeline(MODELS[name]), data=ROWS)
    assert result.status == "completed", [t.error for t in result.tasks]
    assert len(server.batches) == 2
    assert len(server.direct) == 2 * 3  # per level: 3 of 4 lines expired
    answered = [t for t in result.tasks if (t.result or "").startswith("batch answer")]
    assert len(answered) == 2
    assert [r.status for r in result.rows or []] == ["completed"] * 4


async def test_tasks_on_other_providers_are_not_batched(
    vendor: tuple[str, BatchServer], probe: Any
):
    name, server = vendor
    spec = pipeline(MODELS[name])
    spec["tasks"].append({"name": "Probe", "prompt": "Probe {{ doc }}", "model": "probe:x"})
    result = await arun(spec, data=ROWS[:2])
    assert result.status == "completed", [t.error for t in result.tasks]
    assert len(probe.calls) == 2 and server.direct == []
    assert sorted(server.batched_prompts()[0]) == ["Read document 0", "Read document 1"]


@pytest.mark.parametrize("vendor", ["openai"], indirect=True)
async def test_the_workflow_timeout_stops_waiting_for_a_batch(vendor: tuple[str, BatchServer]):
    name, server = vendor
    server.proceed.clear()  # the batch never ends
    result = await arun(pipeline(MODELS[name], workflow_timeout_seconds=2), data=ROWS)
    assert result.status == "failed"
    assert {t.status for t in result.tasks} == {"cancelled"}
    assert len(server.batches) == 1 and server.direct == []


@pytest.fixture
def both() -> Iterator[dict[str, BatchServer]]:
    """Both vendors' batch servers at once (one CLI run exercises both wire shapes)."""
    servers: dict[str, BatchServer] = {"openai": OpenAIBatchServer(OPENAI_KEY).start(),
                                       "anthropic": AnthropicBatchServer(ANTHROPIC_KEY).start()}
    yield servers
    for server in servers.values():
        server.stop()


def test_a_run_killed_while_its_batches_are_in_progress_reattaches_to_them(
    both: dict[str, BatchServer], prefect_api: str, tmp_path: Path
):
    gpt, claude = both["openai"], both["anthropic"]
    for server in both.values():
        server.proceed.clear()  # the first batches stay in progress until the run is killed
    spec = tmp_path / "batched.json"
    spec.write_text(json.dumps({
        "name": "batched", "config": {"retry_backoff_seconds": 0,
                                      "model_options": {"max_tokens": 16}},
        "tasks": [{"name": "Read", "prompt": "Read {{ doc }}", "model": MODELS["openai"],
                   "depends_on": []},
                  {"name": "Skim", "prompt": "Skim {{ doc }}", "model": MODELS["anthropic"],
                   "depends_on": []},
                  {"name": "Title", "prompt": "Title for: {{ Read }}",
                   "depends_on": ["Read", "Skim"], "model": MODELS["anthropic"]}]}))
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "storage"),
           "PREFECT_HOME": str(tmp_path / "home"), "PROMPTDAG_BATCH_POLL_SECONDS": "0.01",
           "PROMPTDAG_BATCH_POLL_MAX_SECONDS": "0.05",
           **server_env("openai", gpt), **server_env("anthropic", claude)}
    cli = [sys.executable, "-m", "promptdag.cli", "run", str(spec), "--data", str(data),
           "--batch-api"]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240  # a wait, not a measure
        while time.monotonic() < deadline and proc.poll() is None:
            firsts = [next(iter(s.batches.values()), None) for s in (gpt, claude)]
            if all(b is not None and b.polls >= 2 for b in firsts):  # both being waited for
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert [len(gpt.batches), len(claude.batches)] == [1, 1]
    polls = [next(iter(s.batches.values())).polls for s in (gpt, claude)]

    for server in both.values():
        server.proceed.set()
    output = tmp_path / "rows-out.jsonl"
    done = subprocess.run([*cli, "--output", str(output)], capture_output=True, text=True,
                          env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "resuming run " in done.stderr
    # the level-0 batches re-attached (polled again, not submitted again), then level 1's
    assert [len(gpt.batches), len(claude.batches)] == [1, 2]
    assert [next(iter(s.batches.values())).polls for s in (gpt, claude)] > polls
    assert sorted(p.splitlines()[0] for p in claude.batched_prompts()[1]) == [
        f"Title for: batch answer to: Read document {i}" for i in range(4)]
    assert gpt.direct == [] and claude.direct == []
    # progress shows the batches' states while the run waits for them
    for server, model in ((gpt, MODELS["openai"]), (claude, MODELS["anthropic"])):
        assert f"batch {next(iter(server.batches))} ({model}): " in done.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"d{i}" for i in range(4)]
    assert all(r["status"] == "completed" for r in rows)
    assert all(r["results"]["Title"].startswith("batch answer to: ") for r in rows)
