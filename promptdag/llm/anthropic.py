"""`anthropic:<model>`: Anthropic's messages API.

Built on the official SDK's async client with its retries off (`max_retries=0`): Prefect's retry
budget is the only one. Structured output is a forced tool whose input is the answer: the tool's
input schema is the requested schema, `tool_choice` names it, and the tool call's input comes
back as the JSON text. A server that ignores the forced tool (no tool_use block in the answer)
gets the schema in the prompt instead, from then on (`negotiation`). `stop_reason` becomes
`finish_reason` ("max_tokens" is "length"; end_turn, stop_sequence, tool_use are "stop").
Vendor errors become ours here and nowhere else (529 "overloaded" is a 5xx: retryable).
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, ClassVar

import anthropic

from promptdag.errors import PermanentProviderError
from promptdag.llm._vendor import VendorModel, schema_name
from promptdag.llm.answer_size import bounded_http_client
from promptdag.llm.base import Completion, CompletionRequest, Usage
from promptdag.llm.context import ANTHROPIC_WINDOW
from promptdag.llm.negotiation import ModeRejected, extract_json, with_instructions
from promptdag.llm.options import ANTHROPIC_MODES, AnthropicOptions
from promptdag.llm.pricing import cost_usd
from promptdag.llm.transport import garbled_answer, http_timeout

ANTHROPIC_API = "https://api.anthropic.com"
_WRAPPED = "value"  # a non-object schema travels as {"value": ...}: tool input must be an object
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length"}


class AnthropicModel(VendorModel[AnthropicOptions]):
    """A messages-API model (see module docstring)."""

    provider = "anthropic"
    default_api = ANTHROPIC_API
    modes = ANTHROPIC_MODES
    negotiated = ("tool",)
    sdk: ClassVar[ModuleType] = anthropic
    sdk_error = anthropic.AnthropicError

    def _client(self, key: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=self.base_url, max_retries=0,
            http_client=bounded_http_client(anthropic.DefaultAsyncHttpxClient),  # answer_size.py
        )

    async def context_window(self) -> int | None:
        """The `context_window` option, else 200,000 tokens for Claude models."""
        if self.options.context_window:
            return self.options.context_window
        return ANTHROPIC_WINDOW if self.model_id.startswith("claude") else None

    async def _send(
        self,
        client: anthropic.AsyncAnthropic,
        request: CompletionRequest,
        mode: str | None,
        last: bool,
    ) -> Completion:
        timeout = http_timeout(request)
        schema = request.response_schema
        tool: dict[str, Any] | None = None
        wrapped = False
        if schema is not None and mode == "tool":
            tool, wrapped = answer_tool(schema)
        body = self._body(request, tool, prompt_schema=schema if mode == "prompt" else None)
        message = await self._call(
            lambda: client.messages.create(**body, timeout=timeout), timeout, mode
        )
        if not isinstance(getattr(message, "content", None), list) or message.usage is None:
            raise garbled_answer(self.label, ValueError("the answer has no content list"))
        text = _tool_answer(message, tool["name"], wrapped) if tool else self._text(message)
        if tool is not None and text is None:
            # The answer ignored the forced tool (servers that do not honour tool_choice).
            plain = self._text(message)
            if not last:
                raise ModeRejected(
                    PermanentProviderError(f"{self.label}: the answer ignored the forced tool"),
                    self._usage(message),
                )
            text = extract_json(plain) or plain
        elif mode == "prompt":
            text = extract_json(text or "") or text
        return self._completion(message, text or "")

    def _body(
        self,
        request: CompletionRequest,
        tool: dict[str, Any] | None,
        prompt_schema: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        opts = self.options
        prompt = request.prompt
        if prompt_schema is not None:
            prompt = with_instructions(prompt, prompt_schema)
        body: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": opts.max_tokens_for(request.max_tokens),
            "messages": [{"role": "user", "content": prompt}],
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

    def _error_detail(self, exc: Any, body: dict[str, Any]) -> tuple[str, str]:
        error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
        message = str(error.get("message") or exc.message)
        return message, (f"{message} [{error['type']}]" if error.get("type") else message)

    @staticmethod
    def _text(message: Any) -> str:
        return "".join(
            block.text for block in message.content if getattr(block, "type", "") == "text"
        )

    def _usage(self, message: Any) -> Usage:
        usage = message.usage
        input_tokens = (
            (usage.input_tokens or 0)
            + (getattr(usage, "cache_creation_input_tokens", None) or 0)
            + (getattr(usage, "cache_read_input_tokens", None) or 0)
        )
        output_tokens = usage.output_tokens or 0
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd(self.name, input_tokens, output_tokens),
        )

    def _completion(self, message: Any, text: str) -> Completion:
        stop = getattr(message, "stop_reason", None)
        return Completion(
            text=text,
            model=self.name,
            finish_reason=_STOP.get(stop, stop) if stop else None,
            usage=self._usage(message),
        )


def answer_tool(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The forced tool whose input is the structured answer, and whether the schema had to be
    wrapped in an object."""
    name = schema_name(schema)
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
