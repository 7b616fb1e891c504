"""What an answer's limits look like to the caller: truncation, context windows and overflow,
garbled bodies, and errors that name the server (real SDKs against loopback servers)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from promptdag.errors import PermanentProviderError, RetryableProviderError
from promptdag.llm.base import CompletionRequest, context_window_of, estimate_tokens
from promptdag.llm.registry import get_model
from promptdag.llm.structured import complete_structured
from tests.providers.servers import AnthropicServer, OpenAIServer, Reply, llama_cpp_overflow


class Outline(BaseModel):
    title: str
    points: list[str]


async def ask(model: str, **fields: Any) -> Any:
    options = fields.pop("options", {})
    request = CompletionRequest(prompt=fields.pop("prompt", "Tell a long story"), **fields)
    return await get_model(model, options).complete(request)


async def test_an_answer_cut_by_the_token_limit_is_marked_truncated(openai_server: OpenAIServer):
    openai_server.script(Reply(content="Once upon a", finish_reason="length"), Reply(content="x"))
    cut = await ask("openai:local", options={"max_tokens": 8})
    assert (cut.finish_reason, cut.truncated) == ("length", True)
    assert cut.model_dump()["truncated"] is True  # serialised with the answer
    whole = await ask("openai:local")
    assert (whole.finish_reason, whole.truncated) == ("stop", False)
    assert openai_server.requests[1].body["max_tokens"] == 1024  # the default limit


async def test_the_default_token_limit_is_a_setting(openai_server: OpenAIServer, monkeypatch):
    monkeypatch.setenv("PROMPTDAG_DEFAULT_MAX_TOKENS", "77")
    await ask("openai:local")
    assert openai_server.requests[0].body["max_tokens"] == 77


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("max_tokens", "length"), ("end_turn", "stop"), ("stop_sequence", "stop"),
     ("tool_use", "stop"), ("refusal", "refusal")],
)  # fmt: skip
async def test_anthropic_stop_reasons_become_finish_reasons(
    anthropic_server: AnthropicServer, stop_reason: str, finish_reason: str
):
    anthropic_server.script(Reply(content="Once upon", finish_reason=stop_reason))
    completion = await ask("anthropic:claude-haiku-4-5")
    assert completion.finish_reason == finish_reason
    assert completion.truncated is (finish_reason == "length")


async def test_a_truncated_structured_answer_gets_twice_the_room_once(
    openai_server: OpenAIServer,
):
    openai_server.script(
        Reply(content='{"title": "Rivers", "points": ["Ni', finish_reason="length", usage=(10, 8)),
        Reply(content='{"title": "Rivers", "points": ["Nile"]}', usage=(10, 12)),
    )
    outline, usage = await complete_structured(
        get_model("openai:local", {"max_tokens": 8}), CompletionRequest(prompt="x"), Outline
    )
    assert outline.points == ["Nile"]
    assert usage.output_tokens == 20
    assert [seen.body["max_tokens"] for seen in openai_server.requests] == [8, 16]
    assert "Validation error" not in openai_server.prompts()[1]  # more room, not a repair


async def test_a_structured_answer_truncated_twice_says_so(openai_server: OpenAIServer):
    cut = Reply(content='{"title": "Riv', finish_reason="length")
    openai_server.script(cut, cut)
    with pytest.raises(PermanentProviderError, match="truncated at 16 tokens"):
        await complete_structured(
            get_model("openai:local", {"max_tokens": 8}), CompletionRequest(prompt="x"), Outline
        )
    assert len(openai_server.requests) == 2


async def test_the_simulated_model_truncates_at_its_max_tokens():
    completion = await ask("simulated", options={"max_tokens": 3})
    assert completion.truncated and completion.usage.output_tokens == 3
    assert len(completion.text) == 8 and estimate_tokens(completion.text) == 3
    whole = await ask("simulated")
    assert whole.finish_reason == "stop" and not whole.truncated


async def test_a_context_overflow_is_permanent_and_gives_both_numbers(
    openai_server: OpenAIServer,
):
    openai_server.script(llama_cpp_overflow(2131, 2048))
    with pytest.raises(PermanentProviderError) as caught:
        await ask("openai:smollm2")
    message = str(caught.value)
    assert f"openai:smollm2 at {openai_server.url}/v1: context overflow: the request has 2131 " \
        "tokens, the model's context is 2048 tokens" in message  # fmt: skip
    assert len(openai_server.requests) == 1


async def test_openai_context_length_exceeded_is_an_overflow(openai_server: OpenAIServer):
    body = {
        "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 130512 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    openai_server.script(Reply(status=400, body=body))  # fmt: skip
    with pytest.raises(PermanentProviderError, match="the request has 130512 tokens, the "
                       "model's context is 128000 tokens"):  # fmt: skip
        await ask("openai:gpt-4o")


async def test_a_garbled_answer_is_retryable_and_names_the_server(openai_server: OpenAIServer):
    openai_server.script(Reply(raw=b'{"id": "chatcmpl-1", "choices": [{"message": {"cont'))
    with pytest.raises(RetryableProviderError) as caught:
        await ask("openai:local")
    message = str(caught.value)
    assert message.startswith(f"openai:local at {openai_server.url}/v1: garbled answer")
    assert "JSONDecodeError" in message


async def test_a_garbled_anthropic_answer_is_retryable(anthropic_server: AnthropicServer):
    anthropic_server.script(Reply(raw=b"<html>502 Bad Gateway</html>"))
    with pytest.raises(RetryableProviderError, match="garbled answer"):
        await ask("anthropic:claude-haiku-4-5")


async def test_context_windows_come_from_the_option_the_table_or_the_server(
    openai_server: OpenAIServer,
):
    assert await context_window_of(get_model("openai:x", {"context_window": 4096})) == 4096
    assert await context_window_of(get_model("openai:gpt-4o-mini")) == 128_000
    assert await context_window_of(get_model("openai:gpt-4.1-2025-04-14")) == 1_047_576
    assert await context_window_of(get_model("anthropic:claude-sonnet-4-5")) == 200_000
    assert await context_window_of(get_model("simulated", {"context_window": 999})) == 999
    assert await context_window_of(get_model("simulated")) is None
    openai_server.props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 4}
    model = get_model("openai:smollm2", {"base_url": f"{openai_server.url}/v1"})
    assert await context_window_of(model) == 2048  # llama.cpp's GET /props: one slot's context


async def test_a_server_without_props_has_no_known_context_window(openai_server: OpenAIServer):
    model = get_model("openai:llama", {"base_url": f"{openai_server.url}/v1"})
    assert await context_window_of(model) is None


async def test_a_dead_server_has_no_known_context_window():
    model = get_model("openai:llama", {"base_url": "http://127.0.0.1:9/v1"})
    assert await context_window_of(model) is None


def test_token_estimates_are_conservative():
    assert estimate_tokens("") == 1
    assert estimate_tokens("word " * 300) == 501  # ~300 real tokens


async def test_a_timeout_names_the_server(openai_server: OpenAIServer):
    openai_server.script(Reply(content="late", delay=0.6))
    with pytest.raises(RetryableProviderError) as caught:
        await ask("openai:local", timeout_seconds=0.2)
    assert str(caught.value) == (
        f"openai:local at {openai_server.url}/v1: no answer within the HTTP timeout (0.2 s)"
    )


def test_an_endpoint_is_shown_without_credentials_or_query():
    from promptdag.llm.transport import endpoint_of

    assert endpoint_of("https://u:p@example.com/v1/?key=abc") == "https://example.com:443/v1"
    assert endpoint_of("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert endpoint_of(None) is None
