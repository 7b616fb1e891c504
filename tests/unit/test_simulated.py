"""The simulated model is deterministic and can fail or wait on request."""

from __future__ import annotations

import asyncio

import pytest

from promptdag.errors import RetryableProviderError
from promptdag.llm import CompletionRequest, estimate_tokens, get_model


def ask(prompt: str, attempt: int = 1, **options) -> str:
    model = get_model("simulated", options)
    return asyncio.run(model.complete(CompletionRequest(prompt=prompt, attempt=attempt))).text


def test_same_prompt_same_answer_and_a_changed_input_changes_it():
    assert ask("Research X") == ask("Research X")
    assert ask("Research X\n\nupstream: a") != ask("Research X\n\nupstream: b")


def test_fail_first_fails_exactly_the_first_attempts():
    for attempt in (1, 2):
        with pytest.raises(RetryableProviderError):
            ask("p", attempt=attempt, fail_first=2)
    assert ask("p", attempt=3, fail_first=2)


def test_failure_rate_is_seeded_and_roughly_right():
    def fails(i: int, seed: int) -> bool:
        try:
            ask(f"prompt {i}", failure_rate=0.3, seed=seed)
            return False
        except RetryableProviderError:
            return True

    draws = [fails(i, 7) for i in range(400)]
    assert draws == [fails(i, 7) for i in range(400)]
    assert 0.22 < sum(draws) / len(draws) < 0.38


def test_usage_is_estimated_from_text_length():
    model = get_model("simulated", {})
    completion = asyncio.run(model.complete(CompletionRequest(prompt="x" * 400)))
    assert completion.usage.input_tokens == estimate_tokens("x" * 400) == 134  # the one rule
    assert completion.usage.output_tokens > 0
