"""LLM providers behind one Protocol and a registry keyed by "provider:model"."""

from promptdag.llm.base import Completion, CompletionRequest, Model, Usage
from promptdag.llm.registry import check_model, get_model, register_provider

__all__ = [
    "Completion",
    "CompletionRequest",
    "Model",
    "Usage",
    "check_model",
    "get_model",
    "register_provider",
]
