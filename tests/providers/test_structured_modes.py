"""Structured output on every server: the best mode a server takes, learnt without spending a
retry and remembered per endpoint and model (real SDKs against loopback servers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from promptdag.errors import PermanentProviderError, SpecError
from promptdag.llm.base import CompletionRequest
from promptdag.llm.negotiation import extract_json, inline_refs, known_mode, schema_instructions
from promptdag.llm.options import check_options
from promptdag.llm.registry import get_model
from promptdag.llm.structured import complete_schema, complete_structured
from tests.providers.servers import (
    ANTHROPIC_KEY,
    AnthropicServer,
    OpenAIServer,
    Reply,
    anthropic_error,
)


class Pet(BaseModel):
    kind: str
    age: int


class Person(BaseModel):  # a nested model: its schema has "$defs" and a "$ref"
    name: str
    pet: Pet


ANN = '{"name": "Ann", "pet": {"kind": "dog", "age": 3}}'


def serve(**kwargs: Any) -> Iterator[OpenAIServer]:
    server = OpenAIServer(key=None, **kwargs).start()
    yield server
    server.stop()


@pytest.fixture
def llama_cpp_python() -> Iterator[OpenAIServer]:
    """Takes JSON mode with a schema; answers `json_schema` with HTTP 500."""
    yield from serve(formats=("json_object",), rejection="llama-cpp-python")


@pytest.fixture
def plain_server() -> Iterator[OpenAIServer]:
    """Takes no response format at all."""
    yield from serve(formats=())


async def ask_person(url: str, model: str = "openai:local", **options: Any) -> Person:
    person, _ = await complete_structured(
        get_model(model, {"base_url": url, **options}),
        CompletionRequest(prompt="Describe Ann and her pet"),
        Person,
    )
    return person


async def test_a_server_that_rejects_json_schema_gets_json_mode_with_the_schema_at_once(
    llama_cpp_python: OpenAIServer,
):
    llama_cpp_python.script(Reply(content=ANN, usage=(40, 20)))
    model = get_model("openai:local", {"base_url": f"{llama_cpp_python.url}/v1"})
    person, usage = await complete_structured(
        model, CompletionRequest(prompt="Describe Ann and her pet"), Person
    )
    assert person == Person(name="Ann", pet=Pet(kind="dog", age=3))
    assert (usage.input_tokens, usage.output_tokens) == (40, 20)  # the rejection cost nothing
    first, second = llama_cpp_python.requests
    assert (first.status, first.body["response_format"]["type"]) == (500, "json_schema")
    fmt = second.body["response_format"]
    assert fmt["type"] == "json_object"
    assert "$ref" not in json.dumps(fmt["schema"])  # references inlined for JSON mode
    assert fmt["schema"]["properties"]["pet"]["properties"]["age"] == {
        "title": "Age", "type": "integer"
    }  # fmt: skip


async def test_the_mode_that_works_is_remembered_for_that_endpoint_and_model(
    llama_cpp_python: OpenAIServer,
):
    url = f"{llama_cpp_python.url}/v1"
    llama_cpp_python.script(Reply(content=ANN), Reply(content=ANN), Reply(content=ANN))
    await ask_person(url)
    assert known_mode("openai", url, "local") == "json_object"
    await ask_person(url)  # a new model object, same endpoint and model
    assert len(llama_cpp_python.requests) == 3  # 2 to learn, then straight to JSON mode
    assert llama_cpp_python.requests[2].body["response_format"]["type"] == "json_object"
    await ask_person(url, "openai:other")  # another model on that server learns for itself
    assert llama_cpp_python.requests[3].body["response_format"]["type"] == "json_schema"


async def test_a_server_that_takes_no_format_gets_the_schema_in_the_prompt(
    plain_server: OpenAIServer,
):
    prose = f"Sure! Here is Ann:\n```json\n{ANN}\n```\nHope this helps."
    plain_server.script(Reply(content=prose), Reply(content=f"Ann: {ANN} (a dog)"))
    url = f"{plain_server.url}/v1"
    assert await ask_person(url) == Person(name="Ann", pet=Pet(kind="dog", age=3))
    kinds = [seen.body.get("response_format", {}).get("type") for seen in plain_server.requests]
    assert kinds == ["json_schema", "json_object", None]
    assert [seen.status for seen in plain_server.requests] == [400, 400, 200]
    assert (
        'object of this shape: {"name": "...", "pet": {"kind": "...", "age": 0}}'
        in (plain_server.prompts()[2])
    )
    assert await ask_person(url) == Person(name="Ann", pet=Pet(kind="dog", age=3))
    assert len(plain_server.requests) == 4  # the second call went straight to prompt mode
    assert "response_format" not in plain_server.requests[3].body


async def test_a_pinned_mode_is_used_as_it_is(openai_server: OpenAIServer):
    openai_server.script(Reply(content=f"Here: {ANN}"))
    person = await ask_person(f"{openai_server.url}/v1", structured_output="prompt")
    assert person.pet.kind == "dog"
    [seen] = openai_server.requests
    assert "response_format" not in seen.body


async def test_a_pinned_mode_the_server_rejects_is_its_error(plain_server: OpenAIServer):
    with pytest.raises(PermanentProviderError, match=r"bad request \(HTTP 400\)"):
        await ask_person(f"{plain_server.url}/v1", structured_output="json_schema")
    assert len(plain_server.requests) == 1


@pytest.mark.parametrize(
    ("model", "mode"),
    [("openai:gpt-4o", "tool"), ("anthropic:claude-x", "json_object"), ("openai:x", "xml")],
)
def test_the_structured_output_option_is_validated(model: str, mode: str):
    with pytest.raises(SpecError, match="structured_output"):
        check_options(model, {"structured_output": mode})


async def test_a_workflow_task_schema_with_references_works_in_prompt_mode(
    plain_server: OpenAIServer,
):
    plain_server.script(Reply(content=f"The answer is {ANN}."))
    value, _ = await complete_schema(
        get_model("openai:local", {"base_url": f"{plain_server.url}/v1",
                                   "structured_output": "prompt"}),
        CompletionRequest(prompt="Describe Ann"),
        Person.model_json_schema(),
    )  # fmt: skip
    assert value == json.loads(ANN)


@pytest.fixture
def tool_ignoring_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicServer]:
    """An Anthropic-compatible server that answers in text when a tool is forced (llama.cpp)."""
    server = AnthropicServer(ANTHROPIC_KEY, honours_tools=False).start()
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    yield server
    server.stop()


async def test_an_anthropic_server_that_ignores_the_forced_tool_gets_the_prompt(
    tool_ignoring_server: AnthropicServer,
):
    server = tool_ignoring_server
    server.script(Reply(content="I like dogs.", usage=(50, 5)), Reply(content=ANN, usage=(60, 20)))
    person, usage = await complete_structured(
        get_model("anthropic:local", {"base_url": server.url}),
        CompletionRequest(prompt="Describe Ann and her pet"),
        Person,
    )
    assert person.name == "Ann"
    assert (usage.input_tokens, usage.output_tokens) == (110, 25)  # the ignored call cost too
    first, second = server.requests
    assert first.body["tool_choice"]["type"] == "tool" and "tools" not in second.body
    assert known_mode("anthropic", server.url, "local") == "prompt"
    server.script(Reply(content=ANN))
    await complete_structured(
        get_model("anthropic:local", {"base_url": server.url}),
        CompletionRequest(prompt="Again"),
        Person,
    )
    assert len(server.requests) == 3 and "tools" not in server.requests[2].body


async def test_an_anthropic_server_that_refuses_tools_gets_the_prompt(
    anthropic_server: AnthropicServer,
):
    anthropic_server.script(
        anthropic_error(
            400, "invalid_request_error", "tool_choice: forced tools are not supported"
        ),
        Reply(content=ANN),
    )
    person, _ = await complete_structured(
        get_model("anthropic:claude-local"), CompletionRequest(prompt="Describe Ann"), Person
    )
    assert person.pet.age == 3
    first, second = anthropic_server.requests
    assert first.status == 400 and "tools" not in second.body


def test_the_first_json_value_is_taken_from_fenced_or_prose_answers():
    assert extract_json('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert extract_json('Sure, {"a": [1, 2]} is it. {"b": 2}') == '{"a": [1, 2]}'
    assert extract_json("I think {not json} but [1, 2]") == "[1, 2]"
    assert extract_json("no JSON here") is None


def test_references_are_inlined_unless_recursive():
    schema = Person.model_json_schema()
    assert "$ref" in json.dumps(schema)
    inlined = inline_refs(schema)
    assert "$ref" not in json.dumps(inlined) and "$defs" not in inlined
    recursive = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
                 "$ref": "#/$defs/N"}  # fmt: skip
    assert inline_refs(recursive) is recursive


def test_prompt_mode_shows_a_template_with_enums_and_descriptions():
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["dog", "cat"], "description": "the animal"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    text = schema_instructions(schema)
    assert '{"kind": "dog", "tags": ["..."]}' in text
    assert '- kind: the animal; one of "dog", "cat"' in text
