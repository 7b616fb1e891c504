"""`openai:<model>`: OpenAI chat completions, and any OpenAI-compatible server by base URL.

Built on the official SDK's async client with its retries off (`max_retries=0`): Prefect's retry
budget is the only one, so 3 retries mean at most 4 HTTP calls. Structured output uses the best
mode the server takes (`negotiation`): the JSON-schema response format (strict only when the
schema already satisfies strict mode's rules, so a pydantic default never becomes a 400), JSON
mode with the schema, or the schema in the prompt. Calls to an unreachable server wait for it
within the outage budget (`outage`). Vendor errors become ours here and nowhere else, naming the
server when it is not OpenAI's own (`openai:smollm2 at http://127.0.0.1:8011/v1: ...`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import openai

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm._vendor import VendorModel, schema_name
from promptdag.llm.answer_size import bounded_http_client
from promptdag.llm.base import Completion, CompletionRequest, Usage
from promptdag.llm.context import known_window, props_window
from promptdag.llm.negotiation import extract_json, inline_refs, with_instructions
from promptdag.llm.options import OPENAI_MODES, OpenAIOptions
from promptdag.llm.pricing import cost_usd
from promptdag.llm.transport import clip, garbled_answer, http_timeout

OPENAI_API = "https://api.openai.com/v1"


class OpenAIModel(VendorModel[OpenAIOptions]):
    """A chat-completions model (see module docstring)."""

    provider = "openai"
    default_api = OPENAI_API
    modes = OPENAI_MODES
    negotiated = ("json_schema", "json_object")
    sdk: ClassVar[ModuleType] = openai
    sdk_error = openai.OpenAIError

    def _client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=key, base_url=self.base_url, max_retries=0,
            http_client=bounded_http_client(openai.DefaultAsyncHttpxClient),  # answer_size.py
        )

    async def context_window(self) -> int | None:
        """The `context_window` option, else the published window of a known OpenAI model,
        else (a self-hosted server) what llama.cpp's `/props` reports; None when unknown."""
        if self.options.context_window:
            return self.options.context_window
        if known := known_window(self.model_id):
            return known
        if self.base_url:
            return await props_window(self.base_url)
        return None

    async def _send(
        self, client: openai.AsyncOpenAI, request: CompletionRequest, mode: str | None, last: bool
    ) -> Completion:
        timeout = http_timeout(request)
        body = self._body(request, mode)
        response = await self._call(
            lambda: client.chat.completions.create(**body, timeout=timeout), timeout, mode
        )
        completion = self._completion(response)
        if mode in ("prompt", "json_object"):
            found = extract_json(completion.text)
            if found is not None:
                completion = completion.model_copy(update={"text": found})
        return completion

    def _body(self, request: CompletionRequest, mode: str | None = None) -> dict[str, Any]:
        opts = self.options
        schema = request.response_schema
        if schema is not None and mode is None:
            mode = "json_schema" if opts.structured_output == "auto" else opts.structured_output
        prompt = request.prompt
        if schema is not None and mode in ("json_object", "prompt"):
            prompt = with_instructions(prompt, schema)
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {"model": self.model_id, "messages": messages}
        for field in ("temperature", "top_p", "stop", "seed", "presence_penalty",
                      "frequency_penalty", "reasoning_effort"):  # fmt: skip
            value = getattr(opts, field)
            if value is not None:
                body[field] = value
        # OpenAI's reasoning models take only the new name; compatible servers know the old.
        limit = opts.max_tokens_for(request.max_tokens)
        body["max_tokens" if self.base_url else "max_completion_tokens"] = limit
        if schema is not None and mode == "json_schema":
            body["response_format"] = response_format(schema, strict=opts.strict_schema)
        elif schema is not None and mode == "json_object":
            body["response_format"] = {"type": "json_object"}
            if self.base_url:  # llama.cpp and vLLM hold JSON mode to a schema; OpenAI has none
                body["response_format"]["schema"] = inline_refs(schema)
        if opts.extra_body:
            body["extra_body"] = opts.extra_body
        return body

    def _completion(self, response: Any) -> Completion:
        if not isinstance(getattr(response, "choices", None), list):
            raise garbled_answer(self.label, ValueError("the answer has no 'choices' list"))
        if not response.choices:
            raise PermanentProviderError(f"{self.label}: the answer has no choices")
        choice = response.choices[0]
        message = choice.message
        if message is None or message.content is None:
            refusal = getattr(message, "refusal", None)
            why = f"refused: {refusal}" if refusal else "the answer has no text"
            raise PermanentProviderError(clip(f"{self.label}: {why}"))
        usage = response.usage
        input_tokens = (usage.prompt_tokens or 0) if usage else 0
        output_tokens = (usage.completion_tokens or 0) if usage else 0
        return Completion(
            text=message.content,
            model=self.name,
            finish_reason=_finish_reason(choice.finish_reason),
            usage=Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost_usd(self.name, input_tokens, output_tokens),
            ),
        )

    def _error_detail(self, exc: Any, body: dict[str, Any]) -> tuple[str, str]:
        message = str(body.get("message") or exc.message)
        kinds = [str(k) for k in (body.get("type"), body.get("code")) if k]
        return message, (f"{message} [{', '.join(kinds)}]" if kinds else message)

    def _status_quirk(self, body: dict[str, Any], detail: str) -> ProviderError | None:
        if body.get("code") == "insufficient_quota":  # a 429 no wait will fix
            return PermanentProviderError(
                clip(f"{self.label}: quota exhausted (HTTP 429): {detail}")
            )
        return None


def _finish_reason(value: Any) -> str | None:
    if value in ("tool_calls", "function_call"):
        return "stop"
    return str(value) if value else None


def response_format(schema: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """The JSON-schema response format for a schema (strict when it qualifies)."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema_name(schema),
            "schema": schema,
            "strict": strict and strict_compatible(schema),
        },
    }


def strict_compatible(node: Any) -> bool:
    """True when strict mode accepts the schema as it is: every object closed
    (`additionalProperties: false`) with every property required, and no defaults."""
    if isinstance(node, list):
        return all(strict_compatible(item) for item in node)
    if not isinstance(node, dict):
        return True
    if "default" in node:
        return False
    if node.get("type") == "object" or "properties" in node:
        properties = node.get("properties", {})
        if node.get("additionalProperties") is not False:
            return False
        if set(node.get("required", [])) != set(properties):
            return False
    for key, value in node.items():
        children = list(value.values()) if key in ("properties", "$defs") else value
        if isinstance(children, (dict, list)) and not strict_compatible(children):
            return False
    return True
