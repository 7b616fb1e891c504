"""One full plan-execute-reflect objective on each real SDK, against the loopback servers:
the plan and the reflection come back as structured output (OpenAI json_schema, Anthropic
tool use), the tasks and the final answer as text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promptdag.api import arun_objective
from tests.providers.servers import AnthropicServer, OpenAIServer, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")

PLAN = {
    "tasks": [
        {"name": "Rivers", "prompt": "List the longest rivers", "depends_on": []},
        {"name": "Lakes", "prompt": "List the largest lakes", "depends_on": []},
        {
            "name": "Summary",
            "prompt": "Summarise the rivers and lakes",
            "depends_on": ["Rivers", "Lakes"],
        },
    ]
}
REFLECTION = {"complete": True, "critique": "Rivers and lakes are covered.", "follow_up_tasks": []}


def config(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "breadth": 2,
        "depth": 2,
        "retry_backoff_seconds": 0,
        "infer_dependencies": False,
    }


def check(result: Any) -> None:
    assert (result.status, result.stop_reason, len(result.rounds)) == (
        "completed",
        "complete",
        1,
    ), result.error
    tasks = result.rounds[0].result.tasks
    assert [t.name for t in tasks] == ["Rivers", "Lakes", "Summary"]
    assert all(t.status == "completed" for t in tasks)
    assert result.rounds[0].reflection.critique == REFLECTION["critique"]
    assert result.final_answer == "Water covers most of the planet."
    # planner + 3 tasks + reflector + synthesiser, each 1,000 in / 100 out
    assert (result.usage.input_tokens, result.usage.output_tokens) == (6000, 600)
    assert result.usage.cost_usd > 0


async def test_a_full_objective_on_openai(openai_server: OpenAIServer):
    text = Reply(content="Nile, Amazon", usage=(1000, 100))
    openai_server.script(
        Reply(content=json.dumps(PLAN), usage=(1000, 100)),
        text,
        text,
        text,
        Reply(content=json.dumps(REFLECTION), usage=(1000, 100)),
        Reply(content="Water covers most of the planet.", usage=(1000, 100)),
    )
    check(await arun_objective("Describe the world's water", config=config("openai:gpt-4o-mini")))
    structured = [
        r.body["response_format"]["json_schema"]["name"]
        for r in openai_server.requests
        if "response_format" in r.body
    ]
    assert len(structured) == 2  # the plan and the reflection asked for their JSON schemas


async def test_a_full_objective_on_anthropic(anthropic_server: AnthropicServer):
    text = Reply(content="Nile, Amazon", usage=(1000, 100))
    anthropic_server.script(
        Reply(tool_input=PLAN, usage=(1000, 100)),
        text,
        text,
        text,
        Reply(tool_input=REFLECTION, usage=(1000, 100)),
        Reply(content="Water covers most of the planet.", usage=(1000, 100)),
    )
    check(
        await arun_objective(
            "Describe the world's water", config=config("anthropic:claude-3-5-haiku-latest")
        )
    )
    forced = [
        r.body["tool_choice"]["name"]
        for r in anthropic_server.requests
        if r.body.get("tool_choice")
    ]
    assert len(forced) == 2  # the plan and the reflection came back through tool use
