"""Outages are one problem, not N: calls to an endpoint that cannot be reached wait for it (one
prober watches), send once it is back, and all fail together when the outage budget is spent."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from promptdag.errors import PermanentProviderError
from promptdag.llm.base import Completion, CompletionRequest
from promptdag.llm.registry import get_model
from tests.providers.servers import OpenAIServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def ask(port: int, n: int, budget: float) -> list[Completion | BaseException]:
    model = get_model(
        "openai:local", {"base_url": f"http://127.0.0.1:{port}/v1", "outage_budget_s": budget}
    )
    calls = [model.complete(CompletionRequest(prompt=f"call {i}")) for i in range(n)]
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_calls_wait_for_a_restarting_server_and_each_sends_once():
    port = free_port()
    restarted: list[OpenAIServer] = []
    back_at: list[float] = []

    def restart() -> None:
        time.sleep(0.8)
        back_at.append(time.monotonic())
        restarted.append(OpenAIServer(key=None, port=port).start())

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        results = await ask(port, 8, budget=60)  # a bound: the calls end when it is back
    finally:
        thread.join()
        restarted[0].stop()
    assert all(isinstance(r, Completion) for r in results), results
    server = restarted[0]
    assert len(server.requests) == 8  # each call sent once, after the server was back
    assert sorted(server.prompts()) == sorted(f"call {i}" for i in range(8))
    assert min(seen.start for seen in server.requests) >= back_at[0]


async def test_a_dead_endpoint_fails_every_call_with_one_message_when_the_budget_is_spent():
    port = free_port()
    clock = time.monotonic()
    results = await ask(port, 8, budget=5)
    elapsed = time.monotonic() - clock
    messages = {str(r) for r in results}
    assert all(isinstance(r, PermanentProviderError) for r in results)
    assert messages == {f"endpoint http://127.0.0.1:{port}/v1 unreachable for 5 s"}
    assert 5 <= elapsed < 20  # the budget once for all 8 calls, not 5 s each
    clock = time.monotonic()  # once spent, a new call fails at once, not after another 5 s
    [late] = await ask(port, 1, budget=5)
    assert isinstance(late, PermanentProviderError) and time.monotonic() - clock < 4


async def test_the_budget_counts_from_when_the_endpoint_went_down():
    port = free_port()

    async def late_call() -> tuple[list[Completion | BaseException], float]:
        await asyncio.sleep(3)
        started = time.monotonic()
        return await ask(port, 1, budget=6.0), started

    first, (second, second_started) = await asyncio.gather(ask(port, 1, 6.0), late_call())
    assert isinstance(first[0], PermanentProviderError)
    assert isinstance(second[0], PermanentProviderError)
    assert time.monotonic() - second_started < 5  # it waited what was left (3 s), not 6 s


def test_the_sync_api_recovers_in_a_new_event_loop():
    port = free_port()
    [failure] = asyncio.run(ask(port, 1, budget=0.3))  # one loop: down, budget spent
    assert isinstance(failure, PermanentProviderError)
    server = OpenAIServer(key=None, port=port).start()
    try:
        [answer] = asyncio.run(ask(port, 1, budget=0.3))  # another loop: back up
    finally:
        server.stop()
    assert isinstance(answer, Completion)
