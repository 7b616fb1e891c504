"""Bounded answers: a 50 MB answer fails its task as a permanent error naming the limit, read
incrementally (the server could send only a fraction of it before the client hung up) and
never retried. The real SDKs against a loopback server that streams a 50 MB chat completion,
with and without a declared Content-Length."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promptdag.api import arun
from promptdag.errors import PermanentProviderError
from promptdag.llm.base import CompletionRequest
from promptdag.llm.registry import get_model
from promptdag.settings import Settings
from tests.providers.servers import OPENAI_KEY
from tests.waiting import await_until

ANSWER_BYTES = 50_000_000
CHUNK = b"x" * 65_536
LIMIT = Settings().max_answer_bytes  # the documented default


class HugeAnswers:
    """Answers every POST with a chat completion whose text is ~50 MB, sent in 64 KB writes;
    counts what each answer managed to send before the client closed the connection."""

    def __init__(self, declare_length: bool) -> None:
        self.sent: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # no length: the body ends when the connection does

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                head = b'{"id":"x","object":"chat.completion","model":"m","choices":[{' \
                       b'"index":0,"finish_reason":"stop","message":{"role":"assistant",' \
                       b'"content":"'
                tail = b'"}}]}'
                n = ANSWER_BYTES // len(CHUNK)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                if declare_length:
                    self.send_header("content-length",
                                     str(len(head) + n * len(CHUNK) + len(tail)))
                self.end_headers()
                sent = 0
                try:
                    self.wfile.write(head)
                    for _ in range(n):
                        self.wfile.write(CHUNK)
                        sent += len(CHUNK)
                    self.wfile.write(tail)
                except OSError:
                    pass  # the client stopped reading and closed
                server.sent.append(sent)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        # Small socket buffers, so what was sent is close to what the client read.
        self.http.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65_536)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"


@pytest.fixture(params=[False, True], ids=["streamed", "declared"])
def huge(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[HugeAnswers]:
    server = HugeAnswers(declare_length=request.param)
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    try:
        yield server
    finally:
        server.http.shutdown()
        server.http.server_close()


async def test_a_50_mb_answer_fails_the_call_naming_the_limit_and_reading_stops(
    huge: HugeAnswers,
):
    with pytest.raises(PermanentProviderError) as failed:
        await get_model("openai:local").complete(CompletionRequest(prompt="Say a lot"))
    assert f"max_answer_bytes={LIMIT:,} bytes" in str(failed.value)
    assert "PROMPTDAG_MAX_ANSWER_BYTES" in str(failed.value)
    await _wait_for(lambda: len(huge.sent) == 1)
    # Reading stopped near the limit: the rest of the 50 MB was never sent (socket buffers on
    # loopback hold a few MB at most).
    assert huge.sent[0] < LIMIT + 8_000_000 < ANSWER_BYTES, huge.sent


@pytest.mark.usefixtures("prefect_api")
async def test_a_task_with_a_50_mb_answer_fails_once_naming_the_size(huge: HugeAnswers):
    spec = {"name": "huge", "config": {"max_retries": 2, "retry_backoff_seconds": 0,
                                       "reuse_results": False},
            "tasks": [{"name": "Talk", "prompt": "Say a lot", "model": "openai:local"}]}
    result = await arun(spec)
    task = result.task("Talk")
    assert result.status == "failed" and task.status == "failed"
    assert f"max_answer_bytes={LIMIT:,}" in (task.error or "")
    await _wait_for(lambda: len(huge.sent) >= 1)
    assert len(huge.sent) == 1  # permanent: not retried


async def _wait_for(condition: Any) -> None:
    async def holds() -> bool:
        return bool(condition())

    await await_until(holds, 120, "the server finished its answer", every=0.05)
