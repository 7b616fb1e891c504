"""Keys never show: workflows that fail in every way (auth, bad request, overload, rate limit,
timeout, a server that echoes the key back) leave no key in results, logs or artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from promptdag.api import arun
from tests.providers.servers import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    AnthropicServer,
    OpenAIServer,
    Reply,
    anthropic_error,
    openai_error,
)
from tests.providers.test_engine import flow_run_logs

pytestmark = pytest.mark.usefixtures("prefect_api")


def fragments(key: str) -> list[str]:
    return [key, key[-16:], key[8:20]]


async def artifact_texts(flow_run_id: str) -> list[str]:
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            ),
            limit=50,
        )
    return [f"{a.key} {a.description} {a.data}" for a in artifacts]


async def test_no_failure_shows_a_key(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer
):
    echo_openai = f"Incorrect API key provided: {OPENAI_KEY}"
    echo_anthropic = f"invalid x-api-key {ANTHROPIC_KEY}"
    openai_server.script(
        openai_error(401, echo_openai, "invalid_request_error", "invalid_api_key"),
        openai_error(400, f"bad request for key {OPENAI_KEY}", "invalid_request_error"),
        openai_error(503, f"overloaded ({OPENAI_KEY})", "server_error"),
        Reply(status=200, content="slow", delay=5),
    )
    anthropic_server.script(
        anthropic_error(401, "authentication_error", echo_anthropic),
        anthropic_error(429, "rate_limit_error", f"slow down {ANTHROPIC_KEY}"),
    )
    tasks: list[dict[str, Any]] = [
        {
            "name": f"openai {i}",
            "prompt": f"question {i}",
            "model": "openai:gpt-4o-mini",
            "depends_on": [],
            "timeout_seconds": 1,
        }
        for i in range(4)
    ] + [
        {
            "name": f"anthropic {i}",
            "prompt": f"question {i}",
            "depends_on": [],
            "model": "anthropic:claude-3-5-haiku-latest",
            "timeout_seconds": 1,
        }
        for i in range(2)
    ]
    result = await arun(
        {
            "name": "leaky",
            "tasks": tasks,
            "config": {"breadth": 1, "max_retries": 0, "failure_mode": "continue"},
        }
    )
    assert all(t.status == "failed" for t in result.tasks)
    assert result.flow_run_id
    artifacts = await artifact_texts(result.flow_run_id)
    assert any("report" in a for a in artifacts)  # the report shows every error
    text = "\n".join([result.model_dump_json(), *await flow_run_logs(result), *artifacts])
    assert "authentication failed" in text
    assert "HTTP timeout" in text or "timed out" in text  # whichever timeout fired first
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        for fragment in fragments(key):
            assert fragment not in text


async def test_a_key_echoed_in_an_answer_is_masked_everywhere_it_is_stored(
    openai_server: OpenAIServer, anthropic_server: AnthropicServer, result_storage: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A model (or a server) that repeats its key in a successful answer: the key from the
    environment and the one from a Secret block are masked in the result, Prefect's result
    storage, the logs and the report artifact, and the rest of the answer is kept."""
    from prefect.blocks.system import Secret

    await Secret(value=ANTHROPIC_KEY).save("promptdag-test-echo", overwrite=True)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("PROMPTDAG_ANTHROPIC_API_KEY_SECRET", "promptdag-test-echo")
    openai_server.script(Reply(content=f"Sure: my key is {OPENAI_KEY}, keep it safe"))
    anthropic_server.script(Reply(content=f"The key I was called with: {ANTHROPIC_KEY}."))
    result = await arun({
        "name": "echo",
        "config": {"max_retries": 0, "reuse_results": False},
        "tasks": [
            {"name": "Echo GPT", "prompt": "What is your key?", "model": "openai:gpt-4o-mini"},
            {"name": "Echo Claude", "prompt": "And yours?", "depends_on": [],
             "model": "anthropic:claude-haiku-4-5"},
        ],
    })
    assert result.status == "completed", result.model_dump_json()
    assert result.task("Echo GPT").result == "Sure: my key is ***, keep it safe"
    assert result.task("Echo Claude").result == "The key I was called with: ***."
    stored = [p.read_bytes().decode(errors="replace") for p in result_storage.rglob("*")
              if p.is_file()]
    assert any("keep it safe" in s for s in stored)  # the answers were persisted...
    assert result.flow_run_id
    artifacts = await artifact_texts(result.flow_run_id)
    assert any("keep it safe" in a for a in artifacts)  # ...and published in the report
    text = "\n".join([result.model_dump_json(), *stored, *artifacts,
                      *await flow_run_logs(result)])
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        for fragment in fragments(key):
            assert fragment not in text  # ...masked, in every place
