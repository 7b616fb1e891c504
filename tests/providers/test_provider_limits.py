"""A provider limit holds across concurrent flow runs (Prefect global concurrency limits)."""

from __future__ import annotations

import asyncio
import json

import pytest
from prefect.client.orchestration import get_client

from promptdag.api import arun
from tests.providers.servers import OpenAIServer, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")


def fan_out(name: str, tasks: int) -> dict[str, object]:
    return {
        "name": name,
        "config": {
            "breadth": tasks,
            "model": "openai:gpt-4o-mini",
            "retry_backoff_seconds": 0,
            "reuse_results": False,
        },
        "tasks": [
            {"name": f"{name}{i}", "prompt": f"{name} {i}", "task_type": "parallel"}
            for i in range(tasks)
        ],
    }


async def test_two_concurrent_runs_share_one_provider_limit(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PROMPTDAG_PROVIDER_LIMITS", json.dumps({"openai": {"max_in_flight": 2}}))
    openai_server.script(*[Reply(content="ok", delay=0.2)] * 8)
    first, second = await asyncio.gather(arun(fan_out("a", 4)), arun(fan_out("b", 4)))
    assert first.status == second.status == "completed"
    # Each run alone would have sent 4 at once; together they never exceeded the limit.
    assert len(openai_server.requests) == 8
    assert openai_server.max_in_flight <= 2
    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name("promptdag:openai")
    assert limit.limit == 2 and limit.active_slots == 0


async def test_without_a_limit_the_runs_use_their_whole_breadth(openai_server: OpenAIServer):
    # 3 s answers: all four are in flight together even when a busy machine starts one late
    openai_server.script(*[Reply(content="ok", delay=3.0)] * 4)
    result = await arun(fan_out("c", 4))
    assert result.status == "completed" and openai_server.max_in_flight == 4
