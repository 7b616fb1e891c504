"""LLM providers behind one Protocol and a registry keyed by "provider:model"."""

from promptdag.llm.base import (
    Completion,
    CompletionRequest,
    Model,
    Usage,
    context_window_of,
    estimate_tokens,
)
from promptdag.llm.registry import check_model, get_model, register_provider

__all__ = [
    "Completion",
    "CompletionRequest",
    "Model",
    "Usage",
    "check_model",
    "context_window_of",
    "estimate_tokens",
    "get_model",
    "register_provider",
]
