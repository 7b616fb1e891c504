"""A run in this process that `promptdag cancel` put in Cancelling is signalled (SIGTERM) until
it leaves Cancelling: a signal whose exception asyncio dropped does not leave the run going on
(promptdag/remote/runs.py `honour_cancellation`)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.states import Cancelled, Cancelling

from promptdag.engine.events import TaskEvent, emit
from promptdag.remote import runs

WATCHER = "promptdag-cancel-watch"  # the thread honour_cancellation polls the state from


def watcher() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == WATCHER)


def test_a_run_still_cancelling_after_its_signal_is_signalled_again_until_it_ends(
        prefect_api: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the watcher needs a server
    monkeypatch.setattr(runs, "RESIGNAL_SECONDS", 0.2)
    heard: list[float] = []
    twice = threading.Event()

    def lose(signum: int, frame: Any) -> None:
        """A SIGTERM heard, then lost: what asyncio does to one landing in a callback."""
        heard.append(time.monotonic())
        if len(heard) >= 2:
            twice.set()

    @flow(name="deaf to its first signal")
    def deaf() -> tuple[int, bool]:
        signal.signal(signal.SIGTERM, lose)  # the engine put its own in: this run hears none
        emit(TaskEvent("deaf", "Answer", "started", None, 0, 1))  # the run's id, for the watch
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(context.flow_run.id, Cancelling(), force=True)
            give_up = time.monotonic() + 120  # a wait, not a measure: it ends at the second
            while not twice.is_set() and time.monotonic() < give_up:  # signal; the main thread
                time.sleep(0.05)  # wakes often, as a run's event loop does, to handle signals
            signalled = len(heard)
            client.set_flow_run_state(context.flow_run.id, Cancelled(), force=True)
        watch = watcher()
        watch.join(timeout=120)  # once the run is no longer Cancelling, the watch is over
        return signalled, watch.is_alive()

    previous = signal.signal(signal.SIGTERM, lose)  # where a late signal would land
    try:
        with runs.honour_cancellation(poll_seconds=0.05):
            state = deaf(return_state=True)
            signalled, watching = state.result(raise_on_failure=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signalled >= 2 and not watching
