"""Loopback HTTP servers that speak the vendors' wire protocols, for the real SDKs to call.

`OpenAIServer` answers `POST /v1/chat/completions` (text, and the response formats it is told to
take: `json_schema` by default; rejecting the others as OpenAI or llama-cpp-python do);
`AnthropicServer` answers `POST /v1/messages` (text, and forced tool use unless told to ignore it,
as llama.cpp does). Both answer `GET /health` (what the outage prober asks). Both check the key and
the request shape as the vendors do, answer errors with the vendors' JSON bodies and status
codes, and record every request with its arrival and departure times. Replies are scripted per
test (`server.script(...)`); with no script left, a request gets a plain success.

Unlike the vendors (which mask it), the 401 message echoes the key it was given in full: the
tests use it to prove that promptdag never shows a key even when a server does.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_KEY = "sk-test-openai-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
ANTHROPIC_KEY = "sk-ant-test-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


@dataclass
class Reply:
    """One scripted answer. `content` (text) or `tool_input` (Anthropic) make a success;
    `body` is sent as it is (errors); `delay` holds the answer back."""

    status: int = 200
    content: str | None = None
    tool_input: Any = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str | None = None  # OpenAI's word ("length"...); Anthropic's stop_reason
    raw: bytes | None = None  # sent as it is, with status 200: a garbled answer
    drop: bool = False  # close the connection without an answer (a server process dying)


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    start: float
    end: float = 0.0
    status: int = 0

    def prompt(self) -> str:
        return str(self.body["messages"][-1]["content"])


def openai_error(
    status: int, message: str, type_: str, code: str | None = None, **headers: str
) -> Reply:
    """An error as OpenAI sends it: `{"error": {"message", "type", "param", "code"}}`."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Reply(status=status, body=body, headers=dict(headers))


def llama_cpp_overflow(n_prompt_tokens: int, n_ctx: int) -> Reply:
    """llama.cpp's answer to a request longer than a slot's context, exactly as it sends it."""
    message = (
        f"request ({n_prompt_tokens} tokens) exceeds the available context size ({n_ctx} "
        "tokens), try increasing it"
    )
    body = {"error": {"code": 400, "message": message, "type": "exceed_context_size_error",
                      "n_prompt_tokens": n_prompt_tokens, "n_ctx": n_ctx}}  # fmt: skip
    return Reply(status=400, body=body)


def llama_cpp_python_rejects_json_schema() -> Reply:
    """llama-cpp-python's server (pydantic validation of `response_format.type`): HTTP 500."""
    detail = (
        "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}]"
    )
    body = {"error": {"message": detail, "type": "internal_server_error", "param": None,
                      "code": None}}  # fmt: skip
    return Reply(status=500, body=body)


def anthropic_error(status: int, type_: str, message: str, **headers: str) -> Reply:
    """An error as Anthropic sends it: `{"type": "error", "error": {"type", "message"}}`."""
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return Reply(status=status, body=body, headers={"request-id": "req_test", **headers})


class WireServer:
    """Common part: a threaded loopback server with a script and a request log."""

    path = "/"
    streams = False  # answers `"stream": true` with server-sent events (`stream`)

    def __init__(
        self, key: str | None, usage: tuple[int, int] = (1200, 300), port: int = 0
    ) -> None:
        self.key = key
        self.usage = usage
        self.props: dict[str, Any] | None = None  # set: answers GET /props (as llama.cpp does)
        self.replies: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> WireServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def prompts(self) -> list[str]:
        return [seen.prompt() for seen in self.requests]

    # Subclasses: check a request, build its success body or a vendor error.
    def check(self, seen: Seen) -> Reply | None:
        raise NotImplementedError

    def success(self, seen: Seen, reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, seen: Seen, answer: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _respond(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        failure = self.check(seen)
        with self._lock:
            reply = failure or (self.replies.popleft() if self.replies else Reply())
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            return -1, {}, b""
        if reply.raw is not None:
            return reply.status, reply.headers, reply.raw
        body = reply.body if reply.body is not None else None
        if body is None and reply.status == 200:
            body = self.success(seen, reply)
        return reply.status, reply.headers, json.dumps(body).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                seen = Seen(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    start=time.monotonic(),
                )
                with server._lock:
                    server.requests.append(seen)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, headers, data = server._respond(seen)
                    seen.status = status
                    if status == -1:  # dropped: no status line, no body
                        self.close_connection = True
                        return
                    kind = "application/json"
                    if status == 200 and body.get("stream") and server.streams:
                        data, kind = server.stream(seen, json.loads(data)), "text/event-stream"
                    self.send_response(status)
                    self.send_header("content-type", kind)
                    self.send_header("content-length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): as a real server sees it
                finally:
                    seen.end = time.monotonic()
                    with server._lock:
                        server.in_flight -= 1

            def do_GET(self) -> None:
                answers = {"/health": {"status": "ok"}}
                if server.props is not None:
                    answers["/props"] = server.props
                status = 200 if self.path in answers else 404
                data = json.dumps(answers.get(self.path, {})).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class OpenAIServer(WireServer):
    """Chat completions: `POST /v1/chat/completions`, `Authorization: Bearer <key>`.

    `formats`: the response formats it takes; others get `rejection` (OpenAI's 400, or
    llama-cpp-python's 500 for `json_schema`)."""

    path = "/v1/chat/completions"
    streams = True
    piece_chars = 16  # a streamed answer's content comes in pieces of this many characters

    def __init__(
        self,
        key: str | None,
        usage: tuple[int, int] = (1200, 300),
        formats: tuple[str, ...] = ("json_schema",),
        rejection: str = "openai",
        port: int = 0,
    ) -> None:
        self.formats = formats
        self.rejection = rejection
        super().__init__(key, usage, port)

    def check(self, seen: Seen) -> Reply | None:
        if seen.path != self.path:
            return openai_error(404, f"Invalid URL (POST {seen.path})", "invalid_request_error")
        given = seen.headers.get("authorization", "").removeprefix("Bearer ")
        if self.key is not None and given != self.key:
            return openai_error(
                401,
                f"Incorrect API key provided: {given}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        body = seen.body
        if not body.get("model") or not body.get("messages"):
            return openai_error(400, "'model' and 'messages' are required", "invalid_request_error")
        fmt = body.get("response_format")
        if fmt is None:
            return None
        kind = fmt.get("type")
        if kind == "json_schema" and "schema" not in fmt.get("json_schema", {}):
            kind = "malformed"
        if kind in self.formats:
            return None
        if self.rejection == "llama-cpp-python" and kind == "json_schema":
            return llama_cpp_python_rejects_json_schema()
        return openai_error(
            400,
            f"Invalid value: '{kind}'. Supported values are: 'text'.",
            "invalid_request_error",
            "invalid_value",
        )

    def success(self, seen: Seen, reply: Reply) -> dict[str, Any]:
        content = reply.content if reply.content is not None else default_answer(seen)
        prompt_tokens, completion_tokens = reply.usage or self.usage
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": seen.body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


    def stream(self, seen: Seen, answer: dict[str, Any]) -> bytes:
        """A whole answer as OpenAI streams it: content in pieces, the finish reason in the
        last content chunk, usage in one more chunk when `stream_options.include_usage`."""
        choice = answer["choices"][0]
        text = choice["message"]["content"]
        base = {k: answer[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        pieces = [text[i:i + self.piece_chars] for i in range(0, len(text), self.piece_chars)]
        chunks = [{**base, "choices": [{"index": 0, "delta": {"content": piece},
                                        "finish_reason": None}]} for piece in pieces]
        chunks.append({**base, "choices": [{"index": 0, "delta": {},
                                            "finish_reason": choice["finish_reason"]}]})
        if (seen.body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": answer["usage"]})
        events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
        return "".join(events).encode()


class AnthropicServer(WireServer):
    """Messages: `POST /v1/messages`, `x-api-key` (or a bearer token), `anthropic-version`.
    `honours_tools=False` answers in text even when a tool is forced (as llama.cpp does)."""

    path = "/v1/messages"

    def __init__(
        self, key: str | None, usage: tuple[int, int] = (1200, 300), honours_tools: bool = True
    ) -> None:
        self.honours_tools = honours_tools
        super().__init__(key, usage)

    def check(self, seen: Seen) -> Reply | None:
        if seen.path != self.path:
            return anthropic_error(404, "not_found_error", f"Not found: {seen.path}")
        given = seen.headers.get("x-api-key") or seen.headers.get("authorization", "").removeprefix(
            "Bearer "
        )
        if self.key is not None and given != self.key:
            return anthropic_error(401, "authentication_error", f"invalid x-api-key: {given}")
        if "anthropic-version" not in seen.headers:
            return anthropic_error(400, "invalid_request_error", "anthropic-version is required")
        body = seen.body
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return anthropic_error(400, "invalid_request_error", f"{name}: Field required")
        choice = body.get("tool_choice")
        if choice is not None and choice.get("name") not in {t["name"] for t in body["tools"]}:
            return anthropic_error(400, "invalid_request_error", "tool_choice names no tool")
        return None

    def success(self, seen: Seen, reply: Reply) -> dict[str, Any]:
        input_tokens, output_tokens = reply.usage or self.usage
        choice = seen.body.get("tool_choice") or {}
        if choice.get("type") == "tool" and reply.content is None and self.honours_tools:
            content: list[dict[str, Any]] = [
                {"type": "tool_use", "id": "toolu_01", "name": choice["name"],
                 "input": reply.tool_input if reply.tool_input is not None else {}}
            ]  # fmt: skip
            stop = "tool_use"
        else:
            text = reply.content if reply.content is not None else default_answer(seen)
            content, stop = [{"type": "text", "text": text}], "end_turn"
        stop = reply.finish_reason or stop
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": seen.body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }


def default_answer(seen: Seen) -> str:
    first = seen.prompt().strip().splitlines()[0] if seen.prompt().strip() else ""
    return f"{seen.body['model']} answers: {first[:80]}"


class RateLimitedOpenAIServer(OpenAIServer):
    """Chat completions under a tokens-per-minute limit enforced as OpenAI does: a request
    takes its prompt's tokens (about four characters a token) plus its `max_tokens` from a
    bucket of `limit` tokens refilled over `window` seconds (a minute at OpenAI, shorter here so
    tests stay short); one that does not fit gets OpenAI's 429 (`rate_limit_exceeded`, with
    `retry-after-ms`). The answer uses its whole `max_tokens` (so the bucket's count is what was
    used). With `headers`, every answer carries OpenAI's `x-ratelimit-*-tokens` headers.

    The server's own accounting measures throughput: `admitted` holds (time, tokens) of every
    request let through, `refused` counts the 429s."""

    def __init__(self, key: str | None, limit: int, window: float, headers: bool = True) -> None:
        self.limit, self.window, self.send_headers = limit, window, headers
        self.level, self.updated = float(limit), time.monotonic()
        self.admitted: list[tuple[float, int]] = []
        self.refused = 0
        self._bucket = threading.Lock()
        super().__init__(key)

    @property
    def per_second(self) -> float:
        return self.limit / self.window

    def _refill(self, now: float) -> None:
        self.level = min(float(self.limit), self.level + (now - self.updated) * self.per_second)
        self.updated = now

    @staticmethod
    def charge(body: dict[str, Any]) -> int:
        text = "".join(str(m.get("content", "")) for m in body.get("messages", []))
        return len(text) // 4 + int(body.get("max_tokens") or 0)

    def check(self, seen: Seen) -> Reply | None:
        failure = super().check(seen)
        if failure is not None:
            return failure
        need = self.charge(seen.body)
        with self._bucket:
            now = time.monotonic()
            self._refill(now)
            if self.level >= need:
                self.level -= need
                self.admitted.append((now, need))
                return None
            self.refused += 1
            wait_ms = int((need - self.level) / self.per_second * 1000) + 1
            used = int(self.limit - self.level)
        reply = openai_error(
            429,
            f"Rate limit reached for {seen.body.get('model')} in organization org-test on tokens "
            f"per min (TPM): Limit {self.limit}, Used {used}, Requested {need}. Please try again "
            f"in {wait_ms}ms.",
            "tokens",
            "rate_limit_exceeded",
        )
        reply.headers = {"retry-after-ms": str(wait_ms), **self.limit_headers()}
        return reply

    def success(self, seen: Seen, reply: Reply) -> dict[str, Any]:
        text = "".join(str(m.get("content", "")) for m in seen.body.get("messages", []))
        reply.usage = (len(text) // 4, int(seen.body.get("max_tokens") or 1))
        return super().success(seen, reply)

    def limit_headers(self) -> dict[str, str]:
        if not self.send_headers:
            return {}
        with self._bucket:
            self._refill(time.monotonic())
            remaining = max(0, int(self.level))
        full_in = (self.limit - remaining) / self.per_second
        return {
            "x-ratelimit-limit-tokens": str(self.limit),
            "x-ratelimit-remaining-tokens": str(remaining),
            "x-ratelimit-reset-tokens": f"{int(full_in * 1000)}ms",
        }

    def _respond(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        status, headers, data = super()._respond(seen)
        if status == 200:
            headers = {**headers, **self.limit_headers()}
        return status, headers, data

    def throughput_share(self) -> float:
        """Tokens admitted after the first full bucket, per second between the first and last
        admission, as a share of the limit's rate (1.0: exactly at the limit)."""
        first, last = self.admitted[0][0], self.admitted[-1][0]
        beyond_burst = sum(tokens for _, tokens in self.admitted) - self.limit
        return beyond_burst / max(last - first, 1e-9) / self.per_second
