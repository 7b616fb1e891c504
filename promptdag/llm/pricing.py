"""Prices in USD per million tokens, and the cost of a call.

A built-in table covers common OpenAI and Anthropic models (list prices as the vendors publish
them; check them before you rely on them). `PROMPTDAG_PRICES_FILE` names a YAML or JSON file
that extends or overrides it, keyed by model string:

    openai:gpt-4o-mini: {input: 0.15, output: 0.60}
    openai:llama3.1: {input: 0, output: 0}

A dated or `-latest` variant is priced as its base model ("claude-sonnet-4-5-20250929" as
"claude-sonnet-4-5"). An unknown model costs 0: not an error, since local servers are free.
Cached-input tokens are counted as input tokens at the input price. Calls answered through a
provider's batch API (OpenAI Batch, Anthropic Message Batches) cost `BATCH_DISCOUNT` of that.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from promptdag.errors import ConfigError
from promptdag.settings import get_settings


class Price(BaseModel):
    """USD per million tokens."""

    input: float = Field(..., ge=0)
    output: float = Field(..., ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return round((input_tokens * self.input + output_tokens * self.output) / 1_000_000, 10)


def _p(input_: float, output: float) -> Price:
    return Price(input=input_, output=output)


DEFAULT_PRICES: dict[str, Price] = {
    "openai:gpt-5": _p(1.25, 10.0),
    "openai:gpt-5-mini": _p(0.25, 2.0),
    "openai:gpt-5-nano": _p(0.05, 0.40),
    "openai:gpt-4.1": _p(2.0, 8.0),
    "openai:gpt-4.1-mini": _p(0.40, 1.60),
    "openai:gpt-4.1-nano": _p(0.10, 0.40),
    "openai:gpt-4o": _p(2.50, 10.0),
    "openai:gpt-4o-mini": _p(0.15, 0.60),
    "openai:o3": _p(2.0, 8.0),
    "openai:o3-mini": _p(1.10, 4.40),
    "openai:o4-mini": _p(1.10, 4.40),
    "openai:gpt-4-turbo": _p(10.0, 30.0),
    "openai:gpt-3.5-turbo": _p(0.50, 1.50),
    "anthropic:claude-opus-4-5": _p(5.0, 25.0),
    "anthropic:claude-opus-4-1": _p(15.0, 75.0),
    "anthropic:claude-opus-4": _p(15.0, 75.0),
    "anthropic:claude-sonnet-4-5": _p(3.0, 15.0),
    "anthropic:claude-sonnet-4": _p(3.0, 15.0),
    "anthropic:claude-haiku-4-5": _p(1.0, 5.0),
    "anthropic:claude-3-7-sonnet": _p(3.0, 15.0),
    "anthropic:claude-3-5-sonnet": _p(3.0, 15.0),
    "anthropic:claude-3-5-haiku": _p(0.80, 4.0),
    "anthropic:claude-3-opus": _p(15.0, 75.0),
    "anthropic:claude-3-haiku": _p(0.25, 1.25),
}

BATCH_DISCOUNT = 0.5  # both vendors' batch APIs charge half the list price

# One trailing date part, version or "latest", stripped one at a time ("-20250929", "-0").
_VARIANT = re.compile(r"-(\d+|latest)$")
_cache: dict[tuple[str, float], dict[str, Price]] = {}


def load_prices(path: Path | None = None) -> dict[str, Price]:
    """The built-in table with the prices file on top (read again when the file changes)."""
    path = path or get_settings().prices_file
    if path is None:
        return dict(DEFAULT_PRICES)
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as exc:
        raise ConfigError(f"prices file {path}: cannot read: {exc.strerror}") from None
    if key not in _cache:
        _cache[key] = {**DEFAULT_PRICES, **_read(path)}
    return _cache[key]


def _read(path: Path) -> dict[str, Price]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"prices file {path}: cannot parse: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"prices file {path}: expected a mapping of model to {{input: ..., output: ...}}"
        )
    prices: dict[str, Price] = {}
    for model, value in data.items():
        try:
            prices[str(model)] = Price.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "price"
            raise ConfigError(
                f"prices file {path}: {model!r}: {where}: {first['msg']} "
                f"(write prices as {json.dumps({'input': 0.15, 'output': 0.6})}, USD per million)"
            ) from None
    return prices


def price_of(model: str, prices: dict[str, Price] | None = None) -> Price | None:
    """The price of a model string, or of the base model it is a dated variant of."""
    table = load_prices() if prices is None else prices
    name = model
    while True:
        if name in table:
            return table[name]
        shorter = _VARIANT.sub("", name)
        if shorter == name:
            return None
        name = shorter


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    """What a call cost; 0 for a model without a price."""
    price = price_of(model)
    return price.cost(input_tokens, output_tokens) if price else 0.0


def batch_cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    """What a call answered through a provider's batch API cost (the discounted price)."""
    return round(cost_usd(model, input_tokens, output_tokens) * BATCH_DISCOUNT, 10)
