"""A real server killed and started again 3 s later: every call made meanwhile waits for it and
succeeds, without a retry."""

from __future__ import annotations

import asyncio
import threading
import time

from promptdag.llm.base import Completion, CompletionRequest
from promptdag.llm.registry import get_model
from tests.real.conftest import LlamaServer


async def test_calls_during_a_restart_all_succeed(llama_server: LlamaServer):
    llama_server.stop()
    started: list[float] = []

    def restart() -> None:
        time.sleep(3)
        started.append(time.monotonic())
        llama_server.start()

    thread = threading.Thread(target=restart)
    thread.start()
    clock = time.monotonic()
    try:
        model = get_model("openai:smollm2", llama_server.options(max_tokens=8))
        calls = [model.complete(CompletionRequest(prompt=f"Count to {i}.")) for i in range(8)]
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        thread.join()
    assert all(isinstance(r, Completion) and r.text for r in results), results
    assert time.monotonic() - clock >= 3
