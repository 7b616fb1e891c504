"""`openai:<model>`: OpenAI chat completions, and any OpenAI-compatible server by base URL.

Built on the official SDK's async client with its retries off (`max_retries=0`): Prefect's retry
budget is the only one, so 3 retries mean at most 4 HTTP calls. Structured output uses the best
mode the server takes (`negotiation`): the JSON-schema response format (strict only when the
schema already satisfies strict mode's rules, so a pydantic default never becomes a 400), JSON
mode with the schema, or the schema in the prompt. Calls to an unreachable server wait for it
within the outage budget (`outage`); a connection dropped right after a constrained request
moves down a mode instead. `stream` sends the same request with `stream: true` and hands each
piece of text on as it arrives. Vendor errors become ours here and nowhere else, naming the
server when it is not OpenAI's own (`openai:smollm2 at http://127.0.0.1:8011/v1: ...`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import openai

from promptdag.errors import PermanentProviderError, ProviderError
from promptdag.llm._vendor import VendorModel, is_a, schema_name
from promptdag.llm.answer_size import bounded_http_client
from promptdag.llm.base import (
    Completion,
    CompletionRequest,
    StreamUnsupported,
    TextSink,
    Usage,
    estimate_tokens,
)
from promptdag.llm.context import known_window, props_window
from promptdag.llm.negotiation import (
    ModeRejected,
    extract_json,
    inline_refs,
    negotiate,
    streams,
    with_instructions,
)
from promptdag.llm.options import OPENAI_MODES, OpenAIOptions
from promptdag.llm.pricing import cost_usd
from promptdag.llm.transport import clip, connection_error, garbled_answer, http_timeout

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

    async def stream(self, request: CompletionRequest, on_text: TextSink) -> Completion:
        """The answer `complete` gives, each piece handed to `on_text` as it arrives."""
        client = await self._cached_client()
        if request.response_schema is None:
            return await self._send(client, request, None, True, on_text)
        if not streams(self.mode_key):
            raise StreamUnsupported(f"{self.label} does not stream structured answers", False)
        return await negotiate(
            self.mode_key,
            self.options.structured_output,
            self.modes,
            lambda mode, last: self._send(client, request, mode, last, on_text),
        )

    async def _send(
        self,
        client: openai.AsyncOpenAI,
        request: CompletionRequest,
        mode: str | None,
        last: bool,
        on_text: TextSink | None = None,
    ) -> Completion:
        """One request in one mode; streamed when `on_text` is given."""
        timeout = http_timeout(request)
        body = self._body(request, mode)
        if on_text is not None:
            body["stream"] = True  # usage comes in a last chunk only when asked (llama.cpp too)
            body["stream_options"] = {"include_usage": True}
        response = await self._call(
            lambda: client.chat.completions.create(**body, timeout=timeout), timeout, mode,
            streaming=on_text is not None,
        )
        if on_text is not None:
            try:
                completion = await self._collect(response, request, on_text,
                                                 mode in self.negotiated)
            except openai.APIError as exc:  # an error event in the stream
                raise self._translate(exc, timeout) from None
        else:
            completion = self._completion(response)
        if mode in ("prompt", "json_object"):
            found = extract_json(completion.text)
            if found is not None:
                completion = completion.model_copy(update={"text": found})
        return completion

    async def _collect(
        self, response: Any, request: CompletionRequest, on_text: TextSink, constrained: bool
    ) -> Completion:
        """A streamed answer's pieces to `on_text`, then the whole as one completion. Usage
        comes in the last chunk; a server that sends none (llama-cpp-python) gets it
        estimated: the prompt's length, and one token a piece."""
        pieces: list[str] = []
        usage: Any = None
        finish: Any = None
        try:
            async for chunk in response:
                usage = getattr(chunk, "usage", None) or usage
                for choice in chunk.choices or []:
                    text = choice.delta.content if choice.delta else None
                    if text:
                        pieces.append(text)
                        on_text(text)
                    finish = choice.finish_reason or finish
        except Exception as exc:  # the stream broke off (the SDK's transport error)
            if not is_a(exc, "TransportError"):
                raise
            error = connection_error(self.label, _Cause(exc))
            if constrained and not pieces:  # dropped before any text: the mode, not the server
                raise ModeRejected(error) from None
            raise error from None
        if usage is not None:
            input_tokens, output_tokens = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:
            input_tokens = estimate_tokens((request.system or "") + request.prompt)
            output_tokens = len(pieces)
        return Completion(
            text="".join(pieces),
            model=self.name,
            finish_reason=_finish_reason(finish),
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                        cost_usd=cost_usd(self.name, input_tokens, output_tokens)),
        )

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


class _Cause(Exception):
    """Carries a transport error as the cause `connection_error` names."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("stream broken off")
        self.__cause__ = cause


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
