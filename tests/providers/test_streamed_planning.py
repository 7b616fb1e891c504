"""Streamed planning through the real OpenAI SDK against loopback servers: a server that will
not stream a constrained answer is asked whole (said once), a connection dropped right after a
constrained request steps the mode down, and an objective's usage counts every call made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from promptdag.api import arun_objective
from promptdag.llm.base import CompletionRequest, StreamUnsupported
from promptdag.llm.negotiation import known_mode
from promptdag.llm.registry import get_model
from tests.providers.servers import OpenAIServer, Reply, Seen, openai_error

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


class NoConstrainedStream(OpenAIServer):
    """Streams text, but refuses `stream` together with a response format (as some do)."""

    def check(self, seen: Seen) -> Reply | None:
        if seen.body.get("stream") and seen.body.get("response_format"):
            return openai_error(400, "stream is not supported with response_format",
                                "invalid_request_error")
        return super().check(seen)


class DiesOnJsonSchema(OpenAIServer):
    """Closes the connection on a `json_schema` request, as llama-cpp-python's process does
    when its grammar compiler gives up; takes JSON mode."""

    def check(self, seen: Seen) -> Reply | None:
        if (seen.body.get("response_format") or {}).get("type") == "json_schema":
            return Reply(drop=True)
        return super().check(seen)


@pytest.fixture
def refusing() -> Iterator[OpenAIServer]:
    server = NoConstrainedStream(key=None, formats=("json_schema",)).start()
    yield server
    server.stop()


@pytest.fixture
def dying() -> Iterator[OpenAIServer]:
    server = DiesOnJsonSchema(key=None, formats=("json_object",)).start()
    yield server
    server.stop()


def request() -> CompletionRequest:
    return CompletionRequest(prompt="give n", response_schema=SCHEMA)


async def test_a_server_that_will_not_stream_a_constrained_answer_is_asked_whole(
    refusing: OpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    model: Any = get_model("openai:refuser", {"base_url": f"{refusing.url}/v1"})
    with pytest.raises(StreamUnsupported) as first:
        await model.stream(request(), lambda piece: None)
    assert first.value.first and "stream" in str(first.value)
    with pytest.raises(StreamUnsupported) as second:  # remembered: no second request
        await model.stream(request(), lambda piece: None)
    assert not second.value.first and len(refusing.requests) == 1
    refusing.script(Reply(content='{"n": 3}'))
    assert (await model.complete(request())).text == '{"n": 3}'


async def test_a_connection_dropped_after_a_constrained_request_steps_the_mode_down(
    dying: OpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    model: Any = get_model("openai:dies", {"base_url": f"{dying.url}/v1",
                                           "outage_budget_s": 0})
    dying.script(Reply(content='{"n": 4}'))
    pieces: list[str] = []
    completion = await model.stream(request(), pieces.append)
    assert json.loads(completion.text) == {"n": 4} and "".join(pieces) == completion.text
    kinds = [seen.body["response_format"]["type"] for seen in dying.requests]
    assert kinds == ["json_schema", "json_object"]
    assert known_mode("openai", f"{dying.url}/v1", "dies") == "json_object"


PLAN_WITHOUT_DEPENDENCIES = {"tasks": [
    {"name": "Rivers", "prompt": "List the longest rivers"},
    {"name": "Lakes", "prompt": "List the largest lakes"},
    {"name": "Summary", "prompt": "Summarise the rivers and lakes"},
]}


async def test_the_objective_usage_counts_every_call_the_server_answered(
    openai_server: OpenAIServer, prefect_api: str
):
    """A plan without dependencies: the analyser answers badly twice (the heuristic takes
    over), and those two calls still count, as every other call does."""
    each = Reply(content="Nile, Amazon", usage=(1000, 100))
    openai_server.script(
        Reply(content=json.dumps(PLAN_WITHOUT_DEPENDENCIES), usage=(1000, 100)),
        Reply(content="not json", usage=(1000, 100)),
        Reply(content="still not json", usage=(1000, 100)),
        each, each, each,
        Reply(content=json.dumps({"complete": True, "critique": "ok", "follow_up_tasks": []}),
              usage=(1000, 100)),
        Reply(content="Water.", usage=(1000, 100)),
    )
    result = await arun_objective("Rivers and lakes", config={
        "model": "openai:gpt-4o-mini", "depth": 1, "retry_backoff_seconds": 0})
    assert result.status == "completed", result.error
    assert result.plan_streamed is False  # every task waited for the inferred dependencies
    assert len(openai_server.requests) == 8
    assert (result.usage.input_tokens, result.usage.output_tokens) == (8000, 800)
