"""`anthropic:<model>`: Anthropic's messages API.

Built on the official SDK's async client with its retries off (`max_retries=0`): Prefect's retry
budget is the only one. Structured output is a forced tool whose input is the answer: the tool's
input schema is the requested schema, `tool_choice` names it, and the tool call's input comes
back as the JSON text. Vendor errors become ours here and nowhere else (529 "overloaded" is a
5xx: retryable).
"""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm.base import Completion, CompletionRequest, Usage
from promptdag.llm.keys import base_url, resolve_key
from promptdag.llm.options import AnthropicOptions, parse_options
from promptdag.llm.pricing import cost_usd
from promptdag.llm.transport import (
    cached_client,
    clip,
    connection_error,
    http_timeout,
    status_error,
    timeout_error,
)

_WRAPPED = "value"  # a non-object schema travels as {"value": ...}: tool input must be an object


class AnthropicModel:
    """A messages-API model (see module docstring)."""

    provider = "anthropic"

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        self.name = f"anthropic:{name}"
        self.model_id = name
        self.options: AnthropicOptions = parse_options("anthropic", options or {})  # type: ignore[assignment]
        self.base_url = base_url("anthropic", self.options)

    async def complete(self, request: CompletionRequest) -> Completion:
        key = await resolve_key(self.name, "anthropic", self.options)
        client = cached_client(
            ("anthropic", self.base_url, key),
            lambda: anthropic.AsyncAnthropic(api_key=key, base_url=self.base_url, max_retries=0),
        )
        timeout = http_timeout(request)
        tool: dict[str, Any] | None = None
        wrapped = False
        if request.response_schema is not None:
            tool, wrapped = answer_tool(request.response_schema)
        try:
            message = await client.messages.create(**self._body(request, tool), timeout=timeout)
        except anthropic.APIError as exc:
            raise _translate(self.name, exc, timeout) from None
        except anthropic.AnthropicError as exc:  # configuration problems found before sending
            raise PermanentProviderError(clip(f"{self.name}: {exc}")) from None
        return self._completion(message, tool, wrapped)

    def _body(self, request: CompletionRequest, tool: dict[str, Any] | None) -> dict[str, Any]:
        opts = self.options
        body: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": opts.max_tokens or 4096,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        if request.system:
            body["system"] = request.system
        if opts.stop:
            body["stop_sequences"] = opts.stop
        if tool is not None:
            body["tools"] = [tool]
            body["tool_choice"] = {"type": "tool", "name": tool["name"]}
        # Sampling fields travel in the JSON body as they always did; newer SDKs no longer
        # declare them as keyword arguments.
        sampling = {
            field: getattr(opts, field)
            for field in ("temperature", "top_p", "top_k")
            if getattr(opts, field) is not None
        }
        if sampling or opts.extra_body:
            body["extra_body"] = {**sampling, **opts.extra_body}
        return body

    def _completion(
        self, message: Any, tool: dict[str, Any] | None, wrapped: bool = False
    ) -> Completion:
        text = _tool_answer(message, tool["name"], wrapped) if tool else None
        if text is None:
            text = "".join(
                block.text for block in message.content if getattr(block, "type", "") == "text"
            )
        usage = message.usage
        input_tokens = (
            (usage.input_tokens or 0)
            + (getattr(usage, "cache_creation_input_tokens", None) or 0)
            + (getattr(usage, "cache_read_input_tokens", None) or 0)
        )
        output_tokens = usage.output_tokens or 0
        return Completion(
            text=text,
            model=self.name,
            usage=Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost_usd(self.name, input_tokens, output_tokens),
            ),
        )


def answer_tool(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The forced tool whose input is the structured answer, and whether the schema had to be
    wrapped in an object."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
    wrapped = schema.get("type") != "object"
    if wrapped:
        defs = {k: v for k, v in schema.items() if k == "$defs"}
        inner = {k: v for k, v in schema.items() if k != "$defs"}
        schema = {
            "type": "object",
            "properties": {_WRAPPED: inner},
            "required": [_WRAPPED],
            **defs,
        }
    tool = {
        "name": name,
        "description": "Give your answer as this tool's input, matching its schema exactly.",
        "input_schema": schema,
    }
    return tool, wrapped


def _tool_answer(message: Any, name: str, wrapped: bool) -> str | None:
    for block in message.content:
        if getattr(block, "type", "") == "tool_use" and block.name == name:
            value = block.input
            if wrapped and isinstance(value, dict):
                value = value.get(_WRAPPED)
            return json.dumps(value)
    return None


def _translate(model: str, exc: anthropic.APIError, timeout: float) -> ProviderError:
    if isinstance(exc, anthropic.APITimeoutError):
        return timeout_error(model, timeout)
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_error(model, exc)
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
        message = str(error.get("message") or exc.message)
        detail = f"{message} [{error['type']}]" if error.get("type") else message
        return status_error(model, exc.status_code, detail, exc.response.headers)
    return PermanentProviderError(clip(f"{model}: {type(exc).__name__}: {exc.message}"))
