"""Limits of a real server (llama.cpp, 2048 tokens a slot): truncation, its context window, a
prompt that overflows it, and an Anthropic messages call."""

from __future__ import annotations

import pytest

from promptdag.errors import PermanentProviderError
from promptdag.llm.base import CompletionRequest, context_window_of, estimate_tokens
from promptdag.llm.registry import get_model
from tests.real.conftest import LlamaServer


async def test_an_answer_cut_at_max_tokens_is_truncated(llama_server: LlamaServer):
    # greedy, and asked for far more than 8 tokens: a sampled answer may end on its own first
    model = get_model("openai:smollm2", llama_server.options(max_tokens=8, temperature=0))
    completion = await model.complete(CompletionRequest(
        prompt="Count from 1 to 100, one number per line."))
    assert completion.finish_reason == "length" and completion.truncated
    assert completion.usage.output_tokens == 8 and completion.usage.input_tokens > 0


async def test_the_context_window_is_read_from_the_server(llama_server: LlamaServer):
    n_ctx = llama_server.props()["default_generation_settings"]["n_ctx"]
    assert n_ctx == 2048
    model = get_model("openai:smollm2", llama_server.options())
    assert await context_window_of(model) == n_ctx


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_prompt_longer_than_the_context_is_a_clear_permanent_error(
    llama_server: LlamaServer, provider: str
):
    prompt = "word " * 2100
    assert estimate_tokens(prompt) > 2048  # the estimate is conservative: it would have warned
    url = llama_server.base_url if provider == "openai" else llama_server.root
    model = get_model(f"{provider}:smollm2", {"base_url": url, "max_tokens": 8})
    with pytest.raises(PermanentProviderError) as caught:
        await model.complete(CompletionRequest(prompt=prompt))
    message = str(caught.value)
    assert message.startswith(f"{provider}:smollm2 at {url}: context overflow: ")
    assert "the request has 2131 tokens, the model's context is 2048 tokens" in message


async def test_an_anthropic_messages_call_reports_text_usage_and_stop(llama_server: LlamaServer):
    model = get_model("anthropic:smollm2", {"base_url": llama_server.root, "max_tokens": 8})
    completion = await model.complete(CompletionRequest(prompt="Say hello."))
    assert completion.text
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    assert completion.finish_reason in ("stop", "length")
