"""Prices: the built-in table, dated variants, a user file that extends or overrides it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptdag.errors import ConfigError
from promptdag.llm.base import CompletionRequest
from promptdag.llm.pricing import DEFAULT_PRICES, Price, cost_usd, load_prices, price_of
from promptdag.llm.registry import get_model
from promptdag.spec.models import parse_spec
from promptdag.spec.validation import validate_spec
from tests.providers.servers import OpenAIServer


def test_common_models_have_prices_per_million_tokens():
    assert price_of("openai:gpt-4o-mini") == Price(input=0.15, output=0.60)
    assert price_of("anthropic:claude-sonnet-4-5") == Price(input=3.0, output=15.0)
    assert cost_usd("openai:gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert all(p.input <= p.output for p in DEFAULT_PRICES.values())


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("openai:gpt-4o-mini-2024-07-18", "openai:gpt-4o-mini"),
        ("openai:gpt-4o-2024-08-06", "openai:gpt-4o"),
        ("anthropic:claude-sonnet-4-5-20250929", "anthropic:claude-sonnet-4-5"),
        ("anthropic:claude-3-5-haiku-latest", "anthropic:claude-3-5-haiku"),
        ("anthropic:claude-opus-4-20250514", "anthropic:claude-opus-4"),
    ],
)
def test_a_dated_variant_is_priced_as_its_base(model: str, base: str):
    assert price_of(model) == DEFAULT_PRICES[base]


@pytest.mark.parametrize("model", ["openai:llama3.1", "openai:gpt-4o-audio-preview", "simulated"])
def test_an_unknown_model_costs_nothing(model: str):
    assert price_of(model) is None and cost_usd(model, 1000, 1000) == 0.0


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_prices_file_overrides_and_extends(tmp_path: Path, monkeypatch, suffix: str):
    prices = {"openai:gpt-4o-mini": {"input": 1, "output": 2}, "openai:llama3.1": {"input": 0.01,
              "output": 0.02}}  # fmt: skip
    file = tmp_path / f"prices{suffix}"
    file.write_text(json.dumps(prices) if suffix == ".json" else
                    "openai:gpt-4o-mini: {input: 1, output: 2}\n"
                    "openai:llama3.1: {input: 0.01, output: 0.02}\n")  # fmt: skip
    monkeypatch.setenv("PROMPTDAG_PRICES_FILE", str(file))
    table = load_prices()
    assert table["openai:gpt-4o-mini"] == Price(input=1, output=2)
    assert table["openai:llama3.1"] == Price(input=0.01, output=0.02)
    assert table["anthropic:claude-haiku-4-5"] == DEFAULT_PRICES["anthropic:claude-haiku-4-5"]


async def test_the_adapter_charges_the_users_price(
    tmp_path: Path, monkeypatch, openai_server: OpenAIServer
):
    file = tmp_path / "prices.yaml"
    file.write_text("openai:llama3.1: {input: 2, output: 4}\n")
    monkeypatch.setenv("PROMPTDAG_PRICES_FILE", str(file))
    completion = await get_model("openai:llama3.1").complete(CompletionRequest(prompt="x"))
    assert completion.usage.cost_usd == pytest.approx((1200 * 2 + 300 * 4) / 1e6)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("openai:gpt-4o: [1, 2]\n", "'openai:gpt-4o': price: Input should be a valid dictionary"),
        ("openai:gpt-4o: {input: -1, output: 2}\n", "input: Input should be greater than"),
        ("openai:gpt-4o: {input: 1}\n", "output: Field required"),
        ("- just a list\n", "expected a mapping"),
        ("a: [unclosed\n", "cannot parse"),
    ],
)
def test_a_bad_prices_file_is_one_line_before_the_run(
    tmp_path: Path, monkeypatch, text: str, error: str
):
    file = tmp_path / "prices.yaml"
    file.write_text(text)
    monkeypatch.setenv("PROMPTDAG_PRICES_FILE", str(file))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    spec = parse_spec({"name": "w", "config": {"model": "openai:gpt-4o"},
                       "tasks": [{"name": "a", "prompt": "x"}]})  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        validate_spec(spec)
    assert error in str(caught.value) and str(file) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_prices_file_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PROMPTDAG_PRICES_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_prices()
