"""Real providers through the whole engine (`promptdag.api.arun` on real Prefect): answers, usage
and cost in the result, retry budgets as HTTP call counts, Retry-After, fallback chains, the
HTTP timeout, Secret blocks, and keys that never show."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import TaskRunSort
from prefect.logging.handlers import APILogHandler

from promptdag.api import arun
from promptdag.engine.results import WorkflowResult
from tests.providers.servers import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    AnthropicServer,
    OpenAIServer,
    Reply,
    anthropic_error,
    openai_error,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

GPT = "openai:gpt-4o-mini"
CLAUDE = "anthropic:claude-haiku-4-5"


def workflow(*tasks: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {"name": "providers", "config": {"retry_backoff_seconds": 0, "reuse_results": False,
                                            **config},
            "tasks": list(tasks)}  # fmt: skip


def t(name: str, prompt: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "prompt": prompt or f"Do {name}", **fields}


async def test_a_workflow_runs_on_openai_and_anthropic(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
):
    openai_server.script(
        Reply(content="Rivers: Nile, Amazon", usage=(1000, 200)),
        Reply(content="Final report", usage=(3000, 500)),
    )
    anthropic_server.script(Reply(content="Missing the Yangtze", usage=(2000, 100)))
    result = await arun(
        workflow(
            t("Research", "List rivers", model=GPT),
            t("Critique", "Critique: {{ Research }}", model=CLAUDE),
            t("Report", "Report from {{ Research }} and {{ Critique }}", model=GPT),
        )
    )
    assert result.status == "completed", [x.error for x in result.tasks]
    research, critique, report = (result.task(n) for n in ("Research", "Critique", "Report"))
    assert (research.model, critique.model, report.model) == (GPT, CLAUDE, GPT)
    assert critique.result == "Missing the Yangtze" and report.result == "Final report"
    assert anthropic_server.prompts() == ["Critique: Rivers: Nile, Amazon"]
    assert openai_server.prompts()[1] == "Report from Rivers: Nile, Amazon and Missing the Yangtze"
    assert research.usage.cost_usd == pytest.approx((1000 * 0.15 + 200 * 0.6) / 1e6)
    assert critique.usage.cost_usd == pytest.approx((2000 * 1.0 + 100 * 5.0) / 1e6)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (6000, 800)
    assert result.usage.cost_usd == pytest.approx(sum(x.usage.cost_usd for x in result.tasks))
    assert all(x.attempts == 1 and not x.fallback_errors for x in result.tasks)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_three_retries_are_four_http_calls(
    provider: str, openai_server: OpenAIServer, anthropic_server: AnthropicServer
):
    if provider == "openai":
        server: Any = openai_server
        server.script(*[openai_error(503, "overloaded", "server_error")] * 10)
    else:
        server = anthropic_server
        server.script(*[anthropic_error(529, "overloaded_error", "Overloaded")] * 10)
    model = GPT if provider == "openai" else CLAUDE
    result = await arun(workflow(t("Flaky", model=model), max_retries=3))
    task = result.task("Flaky")
    assert task.status == "failed" and task.attempts == 4
    assert len(server.requests) == 4
    assert "server error (HTTP 5" in (task.error or "")


async def test_a_permanent_error_is_one_call_and_a_clear_message(openai_server: OpenAIServer):
    openai_server.script(openai_error(404, "The model `gpt-9` does not exist",
                                      "invalid_request_error", "model_not_found"))  # fmt: skip
    result = await arun(workflow(t("Lost", model="openai:gpt-9"), max_retries=3))
    task = result.task("Lost")
    assert task.status == "failed" and task.attempts == 1 and len(openai_server.requests) == 1
    assert task.error == (  # a server of its own (OPENAI_BASE_URL) is named in the error
        f"openai:gpt-9 at {openai_server.url}/v1: not found (check the model name and base URL) "
        "(HTTP 404): "
        "The model `gpt-9` does not exist [invalid_request_error, model_not_found]"
    )


async def test_the_retry_waits_out_retry_after_outside_the_task_timeout(
    openai_server: OpenAIServer,
):
    openai_server.script(openai_error(429, "Rate limit reached", "requests",
                                      "rate_limit_exceeded", **{"retry-after": "1"}))  # fmt: skip
    # The task timeout (0.8 s) is shorter than the wait: the wait is not part of an attempt.
    result = await arun(workflow(t("Limited", model=GPT, timeout_seconds=0.8), max_retries=2))
    task = result.task("Limited")
    assert task.status == "completed" and task.attempts == 2
    first, second = openai_server.requests
    assert second.start - first.end >= 1.0


async def test_fallback_after_a_permanent_failure(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
):
    openai_server.script(openai_error(400, "Invalid 'messages'", "invalid_request_error"))
    anthropic_server.script(Reply(content="Claude's answer"))
    result = await arun(workflow(t("Research", model=[GPT, CLAUDE]), max_retries=3))
    task = result.task("Research")
    assert task.status == "completed" and task.model == CLAUDE
    assert task.result == "Claude's answer" and task.attempts == 2
    assert list(task.fallback_errors) == [GPT]
    assert "bad request (HTTP 400)" in task.fallback_errors[GPT]
    names = await task_run_names(result, expected=2)
    assert names == ["Research", f"Research (fallback 1: {CLAUDE})"]


async def test_fallback_after_exhausted_retries_to_a_local_server(openai_server: OpenAIServer):
    openai_server.script(*[openai_error(500, "boom", "server_error")] * 5)
    local = OpenAIServer(key=None).start()  # an OpenAI-compatible server, no key
    try:
        result = await arun(
            workflow(
                t("Research", model=[GPT, "openai:llama3.1"]),
                max_retries=2,
                model_options={"openai:llama3.1": {"base_url": f"{local.url}/v1"}},
            )
        )
    finally:
        local.stop()
    task = result.task("Research")
    assert task.status == "completed" and task.model == "openai:llama3.1"
    assert len(openai_server.requests) == 3 and len(local.requests) == 1
    assert task.attempts == 4
    assert task.usage.cost_usd == 0.0  # a local model has no price


async def test_when_every_model_fails_the_error_names_each(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
):
    openai_server.script(openai_error(400, "bad", "invalid_request_error"))
    anthropic_server.script(anthropic_error(400, "invalid_request_error", "worse"))
    result = await arun(workflow(t("Research", model=[GPT, CLAUDE]), max_retries=3))
    task = result.task("Research")
    assert task.status == "failed" and task.attempts == 2
    assert (task.error or "").startswith(f"all 2 models failed: {GPT}: ")
    assert f"; {CLAUDE}: " in (task.error or "") and "worse" in (task.error or "")


async def test_the_http_timeout_fires_before_the_task_timeout(openai_server: OpenAIServer):
    openai_server.script(Reply(content="late", delay=2.0), Reply(content="late", delay=2.0))
    result = await arun(workflow(t("Slow", model=GPT, timeout_seconds=0.5), max_retries=1))
    task = result.task("Slow")
    assert task.status == "failed" and task.attempts == 2 and len(openai_server.requests) == 2
    # Our provider timeout (90% of the time left), not Prefect's "timed out after 0.5 s".
    found = re.search(r"no answer within the HTTP timeout \(([\d.]+) s\)", task.error or "")
    assert found and 0 < float(found.group(1)) <= 0.45


async def test_a_secret_block_holds_the_key(openai_server: OpenAIServer, monkeypatch):
    await Secret(value=OPENAI_KEY).save("promptdag-test-openai", overwrite=True)
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("PROMPTDAG_OPENAI_API_KEY_SECRET", "promptdag-test-openai")
    result = await arun(workflow(t("Research", model=GPT)))
    assert result.status == "completed"
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"


async def test_a_missing_secret_block_is_a_permanent_clear_error(openai_server, monkeypatch):
    monkeypatch.setenv("PROMPTDAG_OPENAI_API_KEY_SECRET", "no-such-block")
    result = await arun(workflow(t("Research", model=GPT), max_retries=3))
    task = result.task("Research")
    assert task.status == "failed" and task.attempts == 1 and not openai_server.requests
    assert "Prefect Secret block 'no-such-block' not found" in (task.error or "")


async def test_a_key_never_appears_in_results_or_logs(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
):
    openai_server.key = anthropic_server.key = "the-key-the-server-expects"  # ours is refused
    result = await arun(workflow(t("A", model=GPT), t("B", model=CLAUDE, depends_on=[])))
    assert [x.status for x in result.tasks] == ["failed", "failed"]
    assert OPENAI_KEY in openai_server.requests[0].headers["authorization"]  # it was sent...
    text = result.model_dump_json() + "\n".join(await flow_run_logs(result))
    assert "authentication failed" in text
    assert any("Finished in state Failed" in line for line in await flow_run_logs(result))
    assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text  # ...and never shown
    assert "5f1e2d3c4b5a" not in text and "0a1b2c3d4e5f" not in text  # not even a fragment


def test_the_cli_never_prints_a_key(prefect_api: str, openai_server: OpenAIServer, tmp_path: Path):
    openai_server.key = "the-key-the-server-expects"
    spec = tmp_path / "w.json"
    spec.write_text(json.dumps(workflow(t("A", model=GPT), max_retries=0)))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    for flags in (["--json"], ["--verbose"]):  # the result JSON; the summary and Prefect's logs
        done = subprocess.run(
            [sys.executable, "-m", "promptdag.cli", "run", str(spec), *flags],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        output = done.stdout + done.stderr
        assert "authentication failed (check the API key) (HTTP 401)" in output
        assert OPENAI_KEY not in output and "5f1e2d3c4b5a" not in output


async def task_run_names(result: WorkflowResult, expected: int) -> list[str]:
    """The flow run's task run names, once the server has recorded them (task runs reach it
    through events, so under load they may lag the flow's end by a moment, or by a minute when
    the server's recorder retries a flush SQLite refused)."""
    runs: list[Any] = []
    for _ in range(2400):  # up to 240 s: a wait, not a measure
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(result.flow_run_id)])),
                limit=50,
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            )
        if len(runs) >= expected:
            break
        await asyncio.sleep(0.1)
    return sorted(run.name for run in runs)


async def flow_run_logs(result: WorkflowResult) -> list[str]:
    await APILogHandler.aflush()  # the run's logs, as the Prefect UI shows them
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(result.flow_run_id)])),
            limit=200,
            offset=0,
        )
    return [log.message for log in logs]
