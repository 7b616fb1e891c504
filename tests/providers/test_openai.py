"""`openai:<model>` through the real `openai` SDK against a loopback chat-completions server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from promptdag.errors import PermanentProviderError, ProviderError, RetryableProviderError
from promptdag.llm.base import CompletionRequest
from promptdag.llm.openai import OpenAIModel, response_format, strict_compatible
from promptdag.llm.registry import get_model
from promptdag.llm.structured import complete_structured
from tests.providers.servers import OPENAI_KEY, OpenAIServer, Reply, openai_error


class Outline(BaseModel):
    title: str
    points: list[str] = Field(default_factory=list)


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    score: int


async def ask(model: str = "openai:gpt-4o-mini", **fields: Any) -> Any:
    options = fields.pop("options", {})
    request = CompletionRequest(prompt=fields.pop("prompt", "Name three rivers"), **fields)
    return await get_model(model, options).complete(request)


async def test_answers_with_usage_and_cost(openai_server: OpenAIServer):
    openai_server.script(Reply(content="Nile, Amazon, Yangtze", usage=(1200, 300)))
    completion = await ask(
        system="Be brief.", options={"temperature": 0.2, "max_tokens": 50, "seed": 7}
    )
    assert completion.text == "Nile, Amazon, Yangtze"
    assert completion.model == "openai:gpt-4o-mini"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (1200, 300)
    assert completion.usage.cost_usd == pytest.approx((1200 * 0.15 + 300 * 0.60) / 1e6)
    [seen] = openai_server.requests
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name three rivers"},
    ]
    assert (seen.body["temperature"], seen.body["seed"]) == (0.2, 7)
    assert seen.body["max_tokens"] == 50  # a compatible server (own base URL) knows this name
    assert "response_format" not in seen.body


def test_the_official_api_gets_max_completion_tokens():
    model = OpenAIModel("o4-mini", {"max_tokens": 50})
    body = model._body(CompletionRequest(prompt="x"))
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


async def test_an_unpriced_model_costs_nothing(openai_server: OpenAIServer):
    completion = await ask("openai:llama3.1")
    assert completion.usage.input_tokens == 1200 and completion.usage.cost_usd == 0.0


async def test_a_dated_model_is_priced_as_its_base_model(openai_server: OpenAIServer):
    completion = await ask("openai:gpt-4o-2024-08-06")
    assert completion.usage.cost_usd == pytest.approx((1200 * 2.5 + 300 * 10.0) / 1e6)


async def test_http_timeout_is_the_requests_and_sdk_retries_are_off(openai_server: OpenAIServer):
    openai_server.script(Reply(content="late", delay=30.0))
    clock = time.monotonic()
    with pytest.raises(RetryableProviderError, match=r"HTTP timeout \(0.2 s\)"):
        await ask(timeout_seconds=0.2)
    assert time.monotonic() - clock < 20  # never the reply's 30 s (a busy machine: no less)
    assert len(openai_server.requests) == 1


ERRORS = {
    "429 rate limit": (
        openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded",
                     **{"retry-after": "2"}),
        RetryableProviderError, "rate limited (HTTP 429)",
    ),
    "500": (openai_error(500, "The server had an error", "server_error"),
            RetryableProviderError, "server error (HTTP 500)"),
    "503": (openai_error(503, "The engine is currently overloaded", "server_error"),
            RetryableProviderError, "HTTP 503"),
    "408": (openai_error(408, "Request timed out", "timeout"), RetryableProviderError, "HTTP 408"),
    "429 quota": (
        openai_error(429, "You exceeded your current quota", "insufficient_quota",
                     "insufficient_quota"),
        PermanentProviderError, "quota exhausted",
    ),
    "429 retry-after too long": (
        openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                     **{"retry-after": "86400"}),
        PermanentProviderError, "more than retry_after_max_seconds",
    ),
    "400": (openai_error(400, "Invalid 'messages'", "invalid_request_error", "invalid_value"),
            PermanentProviderError, "bad request (HTTP 400)"),
    "403": (openai_error(403, "Project does not have access", "invalid_request_error"),
            PermanentProviderError, "permission denied"),
    "404": (openai_error(404, "The model `gpt-9` does not exist", "invalid_request_error",
                         "model_not_found"),
            PermanentProviderError, "not found (check the model name"),
    "422": (openai_error(422, "Unprocessable", "invalid_request_error"),
            PermanentProviderError, "HTTP 422"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ERRORS))
async def test_errors_are_mapped_once_in_one_http_call(openai_server: OpenAIServer, case: str):
    reply, expected, text = ERRORS[case]
    openai_server.script(reply)
    with pytest.raises(ProviderError) as caught:
        await ask()
    assert type(caught.value) is expected
    prefix = f"openai:gpt-4o-mini at {openai_server.url}/v1: "  # a custom server is named
    assert text in str(caught.value) and str(caught.value).startswith(prefix)
    assert reply.body["error"]["message"] in str(caught.value)  # the vendor's own words
    assert len(openai_server.requests) == 1  # the SDK did not retry behind Prefect's back


async def test_retry_after_is_carried_in_seconds(openai_server: OpenAIServer):
    openai_server.script(
        openai_error(429, "slow down", "requests", **{"retry-after": "2"}),
        openai_error(429, "slow down", "requests", **{"retry-after-ms": "1500"}),
    )
    for expected in (2.0, 1.5):
        with pytest.raises(RetryableProviderError) as caught:
            await ask()
        assert caught.value.retry_after == expected
        assert caught.value.not_before is not None


async def test_a_bad_key_is_permanent_and_never_shown(openai_server: OpenAIServer, monkeypatch):
    wrong = "sk-proj-WRONGKEY0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(PermanentProviderError) as caught:
        await ask()
    message = str(caught.value)
    assert "authentication failed" in message and "HTTP 401" in message
    assert wrong not in message and "WRONGKEY" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_refused_connection_waits_out_the_outage_budget_then_names_the_endpoint():
    server = OpenAIServer(OPENAI_KEY).start()
    url = server.url
    server.stop()  # nothing listens there now
    options = {"base_url": f"{url}/v1?token=x", "api_key_env": "NO_SUCH_VARIABLE",
               "outage_budget_s": 0.3}  # fmt: skip
    with pytest.raises(PermanentProviderError) as caught:
        await ask(options=options)
    assert str(caught.value) == f"endpoint {url}/v1 unreachable for 0.3 s"  # no query string


async def test_a_compatible_server_needs_no_key(monkeypatch):
    server = OpenAIServer(key=None).start()
    try:
        completion = await ask("openai:llama3.1", options={"base_url": f"{server.url}/v1"})
    finally:
        server.stop()
    assert completion.text.startswith("llama3.1 answers")
    assert server.requests[0].headers["authorization"] == "Bearer no-key-needed"


async def test_extra_body_is_sent_as_it_is(openai_server: OpenAIServer):
    await ask(options={"extra_body": {"top_k": 20, "repetition_penalty": 1.1}})
    body = openai_server.requests[0].body
    assert body["top_k"] == 20 and body["repetition_penalty"] == 1.1


async def test_a_refusal_is_permanent(openai_server: OpenAIServer):
    body = {
        "id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": None, "refusal": "I can't help with that."}}],
    }  # fmt: skip
    openai_server.script(Reply(body=body))
    with pytest.raises(PermanentProviderError, match="refused: I can't help with that"):
        await ask()


async def test_structured_output_uses_the_json_schema_response_format(
    openai_server: OpenAIServer,
):
    openai_server.script(Reply(content='{"title": "Rivers", "points": ["Nile"]}'))
    outline, usage = await complete_structured(
        get_model("openai:gpt-4o-mini"), CompletionRequest(prompt="Outline rivers"), Outline
    )
    assert outline == Outline(title="Rivers", points=["Nile"])
    assert usage.input_tokens == 1200
    fmt = openai_server.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Outline"
    assert fmt["json_schema"]["schema"] == Outline.model_json_schema()
    assert fmt["json_schema"]["strict"] is False  # a default makes strict mode refuse the schema


async def test_strict_mode_when_the_schema_allows_it(openai_server: OpenAIServer):
    openai_server.script(Reply(content='{"title": "x", "score": 3}'))
    closed, _ = await complete_structured(
        get_model("openai:gpt-4o-mini"), CompletionRequest(prompt="Rate"), Closed
    )
    assert closed.score == 3
    assert openai_server.requests[0].body["response_format"]["json_schema"]["strict"] is True


def test_strict_compatibility_rules():
    assert strict_compatible(Closed.model_json_schema())
    assert not strict_compatible(Outline.model_json_schema())
    opened = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert not strict_compatible(opened)
    assert response_format(opened, strict=False)["json_schema"]["strict"] is False


async def test_structured_output_is_repaired_once_with_the_validation_error(
    openai_server: OpenAIServer,
):
    openai_server.script(
        Reply(content='{"points": ["Nile"]}', usage=(100, 10)),
        Reply(content='{"title": "Rivers", "points": ["Nile"]}', usage=(150, 12)),
    )
    outline, usage = await complete_structured(
        get_model("openai:gpt-4o-mini"), CompletionRequest(prompt="Outline rivers"), Outline
    )
    assert outline.title == "Rivers"
    assert (usage.input_tokens, usage.output_tokens) == (250, 22)
    first, second = openai_server.prompts()
    assert "Validation error" not in first
    assert "Validation error: title: Field required" in second
    assert '{"points": ["Nile"]}' in second  # the model sees its own bad answer


async def test_structured_output_invalid_twice_is_permanent(openai_server: OpenAIServer):
    openai_server.script(Reply(content="not json"), Reply(content='{"points": 1}'))
    with pytest.raises(PermanentProviderError, match="invalid Outline twice"):
        await complete_structured(
            get_model("openai:gpt-4o-mini"), CompletionRequest(prompt="x"), Outline
        )
    assert len(openai_server.requests) == 2
