"""Loopback servers for the vendors' batch APIs, as their API references document them.

`OpenAIBatchServer`: `POST /v1/files` (multipart, `purpose=batch`, a JSONL of `{"custom_id",
"method": "POST", "url": "/v1/chat/completions", "body"}` lines, one model per file), `POST
/v1/batches` (`input_file_id`, `endpoint`, `completion_window: "24h"`), `GET
/v1/batches/{id}` (status validating -> in_progress -> finalizing -> completed, or expired;
`request_counts` {total, completed, failed}; `output_file_id`, `error_file_id`), `GET
/v1/files/{id}/content` (the output and error JSONL files), and `POST /v1/chat/completions`.

`AnthropicBatchServer`: `POST /v1/messages/batches` (`requests: [{custom_id, params}]`), `GET
/v1/messages/batches/{id}` (`processing_status` in_progress -> ended; `request_counts`
{processing, succeeded, errored, canceled, expired}; `results_url` once ended), `GET
/v1/messages/batches/{id}/results` (JSONL of `{custom_id, result: {type: succeeded | errored |
expired, ...}}`), and `POST /v1/messages`.

A batch moves one state each time it is polled, while `proceed` is set (clear it to hold a
batch in progress); lines whose prompt starts with a string of `fail` come back errored; with
`expire_after` set, a batch expires with only that many lines answered. Keys are checked.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = (100, 20)
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class Batch:
    id: str
    lines: list[dict[str, Any]]  # custom_id and body (OpenAI) or params (Anthropic)
    steps: list[str]
    step: int = 0
    polls: int = 0
    files: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.steps[self.step]


def _prompt(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def answer_text(prompt: str, how: str) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return f"{how} answer to: {first[:60]}"


class BatchServer:
    """Common part: a threaded loopback server, its batches and what it was asked."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.proceed = threading.Event()
        self.proceed.set()
        self.fail: tuple[str, ...] = ()
        self.expire_after: int | None = None
        self.batches: dict[str, Batch] = {}
        self.direct: list[dict[str, Any]] = []  # per-call requests' bodies
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> BatchServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def batched_prompts(self) -> list[list[str]]:
        """Each batch's prompts, in the order the batches were created."""
        return [[_prompt(self.body_of(line)) for line in b.lines] for b in self.batches.values()]

    def direct_prompts(self) -> list[str]:
        return [_prompt(body) for body in self.direct]

    # vendor parts
    def body_of(self, line: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def authorised(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def route(self, method: str, path: str, headers: dict[str, str],
              raw: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    def _advance(self, batch: Batch) -> None:
        batch.polls += 1
        if self.proceed.is_set() and batch.step < len(batch.steps) - 1:
            batch.step += 1

    def _outcome(self, batch: Batch, index: int, prompt: str) -> str:
        """succeeded, errored or expired, for the line at `index`."""
        if self.expire_after is not None and index >= self.expire_after:
            return "expired"
        if any(prompt.startswith(text) for text in self.fail):
            return "errored"
        return "succeeded"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if not server.authorised(headers):
                    status, body = 401, {"error": {"message": "invalid key",
                                                   "type": "authentication_error"}}
                else:
                    with server._lock:
                        status, body = server.route(method, self.path, headers, raw)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                kind = "application/jsonl" if isinstance(body, bytes) else "application/json"
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self._serve("POST")

            def do_GET(self) -> None:
                self._serve("GET")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _openai_error(status: int, message: str) -> tuple[int, Any]:
    return status, {"error": {"message": message, "type": "invalid_request_error",
                              "param": None, "code": None}}


class OpenAIBatchServer(BatchServer):
    """OpenAI's files, batches and chat completions (see module docstring)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.files: dict[str, bytes] = {}

    def authorised(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.key}"

    def body_of(self, line: dict[str, Any]) -> dict[str, Any]:
        return dict(line["body"])

    def route(self, method: str, path: str, headers: dict[str, str],
              raw: bytes) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/files":
            return self._upload(headers, raw)
        if method == "POST" and path == "/v1/batches":
            return self._create(json.loads(raw))
        if method == "POST" and path == "/v1/chat/completions":
            body = json.loads(raw)
            self.direct.append(body)
            return 200, _chat(body, "direct")
        found = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        if method == "GET" and found and found.group(1) in self.batches:
            batch = self.batches[found.group(1)]
            self._advance(batch)
            return 200, self._batch_object(batch)
        found = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if method == "GET" and found and found.group(1) in self.files:
            return 200, self.files[found.group(1)]
        return _openai_error(404, f"Invalid URL ({method} {path})")

    def _upload(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"content-type: {headers['content-type']}\r\n\r\n".encode() + raw)
        parts = {part.get_param("name", header="content-disposition"): part
                 for part in message.iter_parts()}
        if "file" not in parts or parts.get("purpose") is None:
            return _openai_error(400, "'file' and 'purpose' are required")
        purpose = bytes(parts["purpose"].get_payload(decode=True)).decode()
        if purpose != "batch":
            return _openai_error(400, f"purpose {purpose!r}: this test server takes 'batch'")
        content = bytes(parts["file"].get_payload(decode=True))
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = content
        return 200, {"id": file_id, "object": "file", "bytes": len(content),
                     "created_at": int(time.time()), "filename": "input.jsonl",
                     "purpose": "batch", "status": "processed"}

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("completion_window") != "24h":
            return _openai_error(400, "completion_window must be '24h'")
        if body.get("endpoint") != "/v1/chat/completions":
            return _openai_error(400, f"endpoint {body.get('endpoint')!r} not served here")
        content = self.files.get(str(body.get("input_file_id")))
        if content is None:
            return _openai_error(404, "No such File object")
        lines = [json.loads(text) for text in content.decode().splitlines() if text.strip()]
        ids = [line.get("custom_id") for line in lines]
        models = {line.get("body", {}).get("model") for line in lines}
        if (len(set(ids)) != len(ids) or len(models) != 1
                or any(line.get("method") != "POST" or line.get("url") != body["endpoint"]
                       or not line.get("body", {}).get("messages") for line in lines)):
            return _openai_error(400, "invalid batch input file")
        batch_id = f"batch_{len(self.batches) + 1:04d}"
        steps = ["validating", "in_progress", "finalizing",
                 "expired" if self.expire_after is not None else "completed"]
        self.batches[batch_id] = Batch(batch_id, lines, steps)
        return 200, self._batch_object(self.batches[batch_id], body)

    def _batch_object(self, batch: Batch, create: dict[str, Any] | None = None) -> dict[str, Any]:
        ended = batch.status in ("completed", "expired")
        if ended and not batch.files:
            self._write_files(batch)
        done = ended or batch.status == "finalizing"
        outcomes = [self._outcome(batch, i, _prompt(line["body"]))
                    for i, line in enumerate(batch.lines)]
        now = int(time.time())
        return {
            "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": None, "input_file_id": "file-0000", "completion_window": "24h",
            "status": batch.status, "output_file_id": batch.files.get("output"),
            "error_file_id": batch.files.get("error"), "created_at": now,
            "in_progress_at": now, "expires_at": now + 86_400,
            "finalizing_at": now if done else None,
            "completed_at": now if batch.status == "completed" else None,
            "failed_at": None, "expired_at": now if batch.status == "expired" else None,
            "cancelling_at": None, "cancelled_at": None,
            "request_counts": {
                "total": len(batch.lines),
                "completed": outcomes.count("succeeded") if done else 0,
                "failed": len(outcomes) - outcomes.count("succeeded") if done else 0,
            },
            "metadata": (create or {}).get("metadata"),
        }

    def _write_files(self, batch: Batch) -> None:
        output, errors = [], []
        for index, line in enumerate(batch.lines):
            outcome = self._outcome(batch, index, _prompt(line["body"]))
            record: dict[str, Any] = {"id": f"batch_req_{index}", "custom_id": line["custom_id"]}
            if outcome == "succeeded":
                output.append({**record, "response": {
                    "status_code": 200, "request_id": f"req_{index}",
                    "body": _chat(line["body"], "batch")}, "error": None})
            elif outcome == "errored":
                errors.append({**record, "response": {
                    "status_code": 400, "request_id": f"req_{index}",
                    "body": {"error": {"message": "the model refused this line",
                                       "type": "invalid_request_error", "param": None,
                                       "code": None}}}, "error": None})
            else:
                errors.append({**record, "response": None, "error": {
                    "code": "batch_expired", "message": "This request could not be executed "
                    "before the completion window expired."}})
        for kind, records in (("output", output), ("error", errors)):
            if records:
                file_id = f"file-{kind}-{batch.id}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in records).encode()
                batch.files[kind] = file_id


def _chat(body: dict[str, Any], how: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None,
                                             "content": answer_text(_prompt(body), how)},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1],
                  "total_tokens": sum(USAGE)},
    }


def _rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _anthropic_error(status: int, type_: str, message: str) -> tuple[int, Any]:
    return status, {"type": "error", "error": {"type": type_, "message": message}}


class AnthropicBatchServer(BatchServer):
    """Anthropic's message batches and messages (see module docstring)."""

    def authorised(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        return given == self.key and "anthropic-version" in headers

    def body_of(self, line: dict[str, Any]) -> dict[str, Any]:
        return dict(line["params"])

    def route(self, method: str, path: str, headers: dict[str, str],
              raw: bytes) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/messages":
            body = json.loads(raw)
            self.direct.append(body)
            return 200, _message(body, "direct")
        if method == "POST" and path == "/v1/messages/batches":
            return self._create(json.loads(raw))
        found = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results)?", path)
        if method == "GET" and found and found.group(1) in self.batches:
            batch = self.batches[found.group(1)]
            if found.group(2):
                if batch.status != "ended":
                    return _anthropic_error(404, "not_found_error", "results not ready")
                return 200, self._results(batch)
            self._advance(batch)
            return 200, self._batch_object(batch)
        return _anthropic_error(404, "not_found_error", f"Not found: {path}")

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _anthropic_error(400, "invalid_request_error", "requests: Field required")
        ids = [r.get("custom_id", "") for r in requests]
        if len(set(ids)) != len(ids) or not all(_ANTHROPIC_ID.match(i) for i in ids):
            return _anthropic_error(400, "invalid_request_error", "custom_id: invalid")
        for request in requests:
            params = request.get("params") or {}
            if not all(name in params for name in ("model", "max_tokens", "messages")):
                return _anthropic_error(400, "invalid_request_error",
                                        "params: model, max_tokens and messages are required")
        batch_id = f"msgbatch_{len(self.batches) + 1:04d}"
        self.batches[batch_id] = Batch(batch_id, requests, ["in_progress", "ended"])
        return 200, self._batch_object(self.batches[batch_id])

    def _batch_object(self, batch: Batch) -> dict[str, Any]:
        ended = batch.status == "ended"
        outcomes = [self._outcome(batch, i, _prompt(r["params"]))
                    for i, r in enumerate(batch.lines)]
        return {
            "id": batch.id, "type": "message_batch", "processing_status": batch.status,
            "request_counts": {
                "processing": 0 if ended else len(outcomes),
                "succeeded": outcomes.count("succeeded") if ended else 0,
                "errored": outcomes.count("errored") if ended else 0,
                "canceled": 0,
                "expired": outcomes.count("expired") if ended else 0,
            },
            "ended_at": _rfc3339() if ended else None, "created_at": _rfc3339(),
            "expires_at": _rfc3339(), "archived_at": None, "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results"
            if ended else None,
        }

    def _results(self, batch: Batch) -> bytes:
        records = []
        for index, request in enumerate(batch.lines):
            outcome = self._outcome(batch, index, _prompt(request["params"]))
            result: dict[str, Any] = {"type": outcome}
            if outcome == "succeeded":
                result["message"] = _message(request["params"], "batch")
            elif outcome == "errored":
                result["error"] = {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "the model refused this line"}}
            records.append({"custom_id": request["custom_id"], "result": result})
        return "".join(json.dumps(r) + "\n" for r in records).encode()


def _message(params: dict[str, Any], how: str) -> dict[str, Any]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": params["model"],
        "content": [{"type": "text", "text": answer_text(_prompt(params), how)}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": USAGE[0], "output_tokens": USAGE[1]},
    }
