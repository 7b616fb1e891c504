"""Structured output from a real server (llama.cpp) in every mode, with a schema that uses
`$ref` (a nested pydantic model)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from promptdag.llm.base import CompletionRequest
from promptdag.llm.negotiation import known_mode
from promptdag.llm.registry import get_model
from promptdag.llm.structured import complete_schema, complete_structured
from tests.real.conftest import LlamaServer


class Pet(BaseModel):
    kind: str
    age: int


class Person(BaseModel):
    name: str
    pet: Pet


PROMPT = "Describe a person named Ann and her pet."


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "prompt"])
async def test_each_pinned_mode_gives_a_valid_nested_answer(llama_server: LlamaServer, mode: str):
    model = get_model(
        "openai:smollm2",
        llama_server.options(structured_output=mode, max_tokens=48, temperature=0),
    )
    person, usage = await complete_structured(model, CompletionRequest(prompt=PROMPT), Person)
    assert isinstance(person.pet, Pet) and person.name
    assert usage.input_tokens > 0 and usage.output_tokens > 0


async def test_auto_uses_the_native_json_schema_of_llama_cpp(llama_server: LlamaServer):
    model = get_model("openai:smollm2", llama_server.options(max_tokens=48, temperature=0))
    value, usage = await complete_schema(
        model, CompletionRequest(prompt=PROMPT), Person.model_json_schema()
    )
    Person.model_validate(value)
    assert known_mode("openai", llama_server.base_url, "smollm2") == "json_schema"
    assert usage.output_tokens <= 48 * 2


async def test_anthropic_messages_fall_back_to_the_prompt_when_the_tool_is_ignored(
    llama_server: LlamaServer,
):
    model = get_model(
        "anthropic:smollm2", {"base_url": llama_server.root, "max_tokens": 48, "temperature": 0}
    )
    person, usage = await complete_structured(model, CompletionRequest(prompt=PROMPT), Person)
    assert isinstance(person.pet, Pet)
    assert known_mode("anthropic", llama_server.root, "smollm2") == "prompt"
    assert usage.input_tokens > 0
