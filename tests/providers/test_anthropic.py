"""`anthropic:<model>` through the real `anthropic` SDK against a loopback messages server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel, Field

from promptdag.errors import PermanentProviderError, ProviderError, RetryableProviderError
from promptdag.llm.anthropic import answer_tool
from promptdag.llm.base import CompletionRequest
from promptdag.llm.registry import get_model
from promptdag.llm.structured import complete_structured
from tests.providers.servers import ANTHROPIC_KEY, AnthropicServer, Reply, anthropic_error

MODEL = "anthropic:claude-haiku-4-5"


class Verdict(BaseModel):
    complete: bool
    critique: str
    follow_up: list[str] = Field(default_factory=list)


async def ask(model: str = MODEL, **fields: Any) -> Any:
    options = fields.pop("options", {})
    request = CompletionRequest(prompt=fields.pop("prompt", "Name three rivers"), **fields)
    return await get_model(model, options).complete(request)


async def test_answers_with_usage_and_cost(anthropic_server: AnthropicServer):
    anthropic_server.script(Reply(content="Nile, Amazon, Yangtze", usage=(1200, 300)))
    completion = await ask(system="Be brief.", options={"temperature": 0.3, "stop": ["##"]})
    assert completion.text == "Nile, Amazon, Yangtze"
    assert completion.model == MODEL
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (1200, 300)
    assert completion.usage.cost_usd == pytest.approx((1200 * 1.0 + 300 * 5.0) / 1e6)
    [seen] = anthropic_server.requests
    assert ANTHROPIC_KEY in (
        seen.headers.get("x-api-key"),
        seen.headers.get("authorization", "")[7:],
    )
    assert "anthropic-version" in seen.headers
    assert seen.body["model"] == "claude-haiku-4-5"
    assert seen.body["system"] == "Be brief."
    assert seen.body["messages"] == [{"role": "user", "content": "Name three rivers"}]
    assert seen.body["max_tokens"] == 1024  # required by the API: PROMPTDAG_DEFAULT_MAX_TOKENS
    assert (seen.body["temperature"], seen.body["stop_sequences"]) == (0.3, ["##"])
    assert "tools" not in seen.body


async def test_cache_tokens_count_as_input(anthropic_server: AnthropicServer):
    body = {
        "id": "m", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 100,
                  "cache_read_input_tokens": 1000},
    }  # fmt: skip
    anthropic_server.script(Reply(body=body))
    completion = await ask()
    assert completion.usage.input_tokens == 1110


async def test_http_timeout_is_the_requests_and_sdk_retries_are_off(
    anthropic_server: AnthropicServer,
):
    anthropic_server.script(Reply(content="late", delay=30.0))
    clock = time.monotonic()
    with pytest.raises(RetryableProviderError, match=r"HTTP timeout \(0.2 s\)"):
        await ask(timeout_seconds=0.2)
    assert time.monotonic() - clock < 20  # never the reply's 30 s (a busy machine: no less)
    assert len(anthropic_server.requests) == 1


ERRORS = {
    "429": (anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded "
                            "your per-minute rate limit", **{"retry-after": "3"}),
            RetryableProviderError, "rate limited (HTTP 429)"),
    "529 overloaded": (anthropic_error(529, "overloaded_error", "Overloaded"),
                       RetryableProviderError, "server error (HTTP 529)"),
    "500": (anthropic_error(500, "api_error", "Internal server error"),
            RetryableProviderError, "HTTP 500"),
    "400": (anthropic_error(400, "invalid_request_error", "messages: at least one message is "
                            "required"),
            PermanentProviderError, "bad request (HTTP 400)"),
    "403": (anthropic_error(403, "permission_error", "Your API key does not have permission"),
            PermanentProviderError, "permission denied"),
    "404": (anthropic_error(404, "not_found_error", "model: claude-9"),
            PermanentProviderError, "not found"),
    "413": (anthropic_error(413, "request_too_large", "Request exceeds the maximum size"),
            PermanentProviderError, "request too large"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ERRORS))
async def test_errors_are_mapped_once_in_one_http_call(
    anthropic_server: AnthropicServer, case: str
):
    reply, expected, text = ERRORS[case]
    anthropic_server.script(reply)
    with pytest.raises(ProviderError) as caught:
        await ask()
    assert type(caught.value) is expected
    prefix = f"{MODEL} at {anthropic_server.url}: "  # a custom server is named
    assert text in str(caught.value) and str(caught.value).startswith(prefix)
    assert reply.body["error"]["message"] in str(caught.value)
    assert f"[{reply.body['error']['type']}]" in str(caught.value)
    assert len(anthropic_server.requests) == 1


async def test_retry_after_is_carried(anthropic_server: AnthropicServer):
    anthropic_server.script(
        anthropic_error(429, "rate_limit_error", "slow", **{"retry-after": "3"})
    )
    with pytest.raises(RetryableProviderError) as caught:
        await ask()
    assert caught.value.retry_after == 3.0


async def test_a_bad_key_is_permanent_and_never_shown(anthropic_server, monkeypatch):
    wrong = "sk-ant-api03-WRONGKEY0123456789abcdef"
    monkeypatch.setenv("ANTHROPIC_API_KEY", wrong)
    with pytest.raises(PermanentProviderError) as caught:
        await ask()
    message = str(caught.value)
    assert "authentication failed" in message and "[authentication_error]" in message
    assert wrong not in message and "WRONGKEY" not in message


async def test_structured_output_is_a_forced_tool(anthropic_server: AnthropicServer):
    anthropic_server.script(Reply(tool_input={"complete": True, "critique": "fine"}))
    verdict, usage = await complete_structured(
        get_model(MODEL), CompletionRequest(prompt="Judge"), Verdict
    )
    assert verdict == Verdict(complete=True, critique="fine")
    assert usage.output_tokens == 300
    body = anthropic_server.requests[0].body
    [tool] = body["tools"]
    assert tool["name"] == "Verdict" and tool["input_schema"] == Verdict.model_json_schema()
    assert body["tool_choice"] == {"type": "tool", "name": "Verdict"}


async def test_structured_output_is_repaired_once(anthropic_server: AnthropicServer):
    anthropic_server.script(
        Reply(tool_input={"complete": "perhaps"}),
        Reply(tool_input={"complete": False, "critique": "needs sources"}),
    )
    verdict, usage = await complete_structured(
        get_model(MODEL), CompletionRequest(prompt="Judge"), Verdict
    )
    assert verdict.critique == "needs sources"
    assert usage.input_tokens == 2400
    second = anthropic_server.prompts()[1]
    assert "Validation error: complete: Input should be a valid boolean" in second


def test_a_schema_that_is_not_an_object_is_wrapped():
    tool, wrapped = answer_tool({"title": "Names", "type": "array", "items": {"type": "string"}})
    assert wrapped and tool["input_schema"]["type"] == "object"
    assert tool["input_schema"]["properties"]["value"]["type"] == "array"
    tool, wrapped = answer_tool(Verdict.model_json_schema())
    assert not wrapped and tool["input_schema"] == Verdict.model_json_schema()


async def test_a_wrapped_answer_is_unwrapped(anthropic_server: AnthropicServer):
    anthropic_server.script(Reply(tool_input={"value": ["Nile", "Amazon"]}))
    schema = {"title": "Names", "type": "array", "items": {"type": "string"}}
    completion = await ask(response_schema=schema)
    assert json.loads(completion.text) == ["Nile", "Amazon"]
