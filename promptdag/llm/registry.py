"""Model strings to models: "simulated", "openai:gpt-4o-mini", "anthropic:claude-...".

Providers register a factory under their prefix; adapters for vendor SDKs are imported only when
their prefix is first used, so the core never imports a vendor SDK at import time.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from promptdag.errors import SpecError
from promptdag.llm.base import Model
from promptdag.llm.options import options_for

ModelFactory = Callable[[str, dict[str, Any]], Model]

# prefix -> "module:attribute" of its factory, loaded lazily.
_BUILTIN: dict[str, str] = {
    "simulated": "promptdag.llm.simulated:SimulatedModel",
    "openai": "promptdag.llm.openai:OpenAIModel",
    "anthropic": "promptdag.llm.anthropic:AnthropicModel",
}
_factories: dict[str, ModelFactory] = {}


def register_provider(prefix: str, factory: ModelFactory) -> None:
    """Make `prefix:<model>` strings resolve through `factory(model_name, options)`."""
    _factories[prefix] = factory


def providers() -> list[str]:
    return sorted(set(_BUILTIN) | set(_factories))


def split_model(model: str) -> tuple[str, str]:
    """ "openai:gpt-4o" -> ("openai", "gpt-4o"); "simulated" -> ("simulated", "")."""
    prefix, _, name = model.partition(":")
    return prefix.strip(), name.strip()


def check_model(model: str) -> None:
    """Raise SpecError if no provider serves this model string (no network, no key needed)."""
    prefix, name = split_model(model)
    if prefix not in _BUILTIN and prefix not in _factories:
        match = difflib.get_close_matches(prefix, providers(), n=1)
        hint = f"; did you mean {match[0]!r}?" if match else f"; known: {', '.join(providers())}"
        raise SpecError(f"unknown model {model!r}: no provider {prefix!r}{hint}")
    if prefix != "simulated" and not name:
        raise SpecError(f"model {model!r} names no model; write it as '{prefix}:<model name>'")


def get_model(model: str, options: dict[str, Any] | None = None) -> Model:
    """The model behind a string, built with the options it gets (shared options, then those
    keyed by this model string: see `promptdag.llm.options`)."""
    check_model(model)
    prefix, name = split_model(model)
    factory = _factories.get(prefix)
    if factory is None:
        module, _, attr = _BUILTIN[prefix].partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _factories[prefix] = factory
    return factory(name, options_for(model, options or {}))


def preload(models: Iterable[str]) -> None:
    """Import the adapters (and so the vendor SDKs) these model strings need, now.

    An SDK takes 0.5-2 s to import; imported lazily, the first task pays it on the event loop
    while every other task waits. Flows call this in a worker thread before their first task
    (`asyncio.to_thread`), and the CLI starts it in the background as soon as it has read the
    spec, so the import overlaps Prefect's start. Unknown prefixes are left to validation."""
    for prefix in {split_model(m)[0] for m in models}:
        if prefix in _BUILTIN and prefix not in _factories:
            module, _, attr = _BUILTIN[prefix].partition(":")
            _factories.setdefault(prefix, getattr(importlib.import_module(module), attr))


def preload_in_background(models: Iterable[str]) -> threading.Thread:
    """`preload` on a daemon thread (returns it; joining is optional)."""
    thread = threading.Thread(target=preload, args=(list(models),), daemon=True,
                              name="promptdag-preload")
    thread.start()
    return thread
