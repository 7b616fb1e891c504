"""`openai:<model>`: OpenAI chat completions, and any OpenAI-compatible server by base URL.

Built on the official SDK's async client with its retries off (`max_retries=0`): Prefect's retry
budget is the only one, so 3 retries mean at most 4 HTTP calls. Structured output uses the
JSON-schema response format (strict only when the schema already satisfies strict mode's rules,
so a pydantic default never becomes a 400). Vendor errors become ours here and nowhere else.
"""

from __future__ import annotations

import re
from typing import Any

import openai

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm.base import Completion, CompletionRequest, Usage
from promptdag.llm.keys import base_url, resolve_key
from promptdag.llm.options import OpenAIOptions, parse_options
from promptdag.llm.pricing import cost_usd
from promptdag.llm.transport import (
    cached_client,
    clip,
    connection_error,
    http_timeout,
    status_error,
    timeout_error,
)


class OpenAIModel:
    """A chat-completions model (see module docstring)."""

    provider = "openai"

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        self.name = f"openai:{name}"
        self.model_id = name
        self.options: OpenAIOptions = parse_options("openai", options or {})  # type: ignore[assignment]
        self.base_url = base_url("openai", self.options)

    async def complete(self, request: CompletionRequest) -> Completion:
        key = await resolve_key(self.name, "openai", self.options)
        client = cached_client(
            ("openai", self.base_url, key),
            lambda: openai.AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0),
        )
        timeout = http_timeout(request)
        try:
            response = await client.chat.completions.create(**self._body(request), timeout=timeout)
        except openai.APIError as exc:
            raise _translate(self.name, exc, timeout) from None
        except openai.OpenAIError as exc:  # configuration problems the SDK finds before sending
            raise PermanentProviderError(clip(f"{self.name}: {exc}")) from None
        return self._completion(response)

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        opts = self.options
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {"model": self.model_id, "messages": messages}
        for field in ("temperature", "top_p", "stop", "seed", "presence_penalty",
                      "frequency_penalty", "reasoning_effort"):  # fmt: skip
            value = getattr(opts, field)
            if value is not None:
                body[field] = value
        if opts.max_tokens is not None:
            # OpenAI's reasoning models take only the new name; compatible servers know the old.
            body["max_tokens" if self.base_url else "max_completion_tokens"] = opts.max_tokens
        if request.response_schema is not None:
            body["response_format"] = response_format(
                request.response_schema, strict=opts.strict_schema
            )
        if opts.extra_body:
            body["extra_body"] = opts.extra_body
        return body

    def _completion(self, response: Any) -> Completion:
        if not response.choices:
            raise PermanentProviderError(f"{self.name}: the answer has no choices")
        message = response.choices[0].message
        if message.content is None:
            refusal = getattr(message, "refusal", None)
            why = f"refused: {refusal}" if refusal else "the answer has no text"
            raise PermanentProviderError(clip(f"{self.name}: {why}"))
        usage = response.usage
        input_tokens = (usage.prompt_tokens or 0) if usage else 0
        output_tokens = (usage.completion_tokens or 0) if usage else 0
        return Completion(
            text=message.content,
            model=self.name,
            usage=Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost_usd(self.name, input_tokens, output_tokens),
            ),
        )


def _translate(model: str, exc: openai.APIError, timeout: float) -> ProviderError:
    if isinstance(exc, openai.APITimeoutError):
        return timeout_error(model, timeout)
    if isinstance(exc, openai.APIConnectionError):
        return connection_error(model, exc)
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = str(body.get("message") or exc.message)
        kinds = [str(k) for k in (body.get("type"), body.get("code")) if k]
        detail = f"{message} [{', '.join(kinds)}]" if kinds else message
        if body.get("code") == "insufficient_quota":  # a 429 no wait will fix
            return PermanentProviderError(clip(f"{model}: quota exhausted (HTTP 429): {detail}"))
        return status_error(model, exc.status_code, detail, exc.response.headers)
    return PermanentProviderError(clip(f"{model}: {type(exc).__name__}: {exc.message}"))


def response_format(schema: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """The JSON-schema response format for a schema (strict when it qualifies)."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
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
