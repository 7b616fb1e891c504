"""A run in this process that `promptdag cancel` put in Cancelling is signalled (SIGTERM) until
it leaves Cancelling: a signal whose exception asyncio dropped does not leave the run going on
(promptdag/remote/runs.py `honour_cancellation`)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.context import FlowRunContext
from prefect.exceptions import TerminationSignal
from prefect.states import Cancelled, Cancelling

from promptdag._prefect_compat import clear_cancel_intent, intend_cancel
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
        clear_cancel_intent()  # the watch recorded "cancel": later runs here are not
    assert signalled >= 2 and not watching


async def test_a_batch_told_to_cancel_starts_nothing_more_even_if_no_signal_lands(
        tmp_path: Path):
    """The cancel intent (recorded before the SIGTERM, by a worker's runner or the CLI's watch)
    is enough: the scheduler starts no row after it and the run ends Cancelled, though here
    no signal follows at all (as when asyncio drops the signal's exception)."""
    from promptdag.api import arun
    from promptdag.engine.events import subscribe
    from tests.flows.test_batch_reliability import batch

    spec, data = batch(tmp_path, "told to cancel", rows=200, latency=0.05)
    finished, started_after = 0, 0

    def listen(event: TaskEvent) -> None:
        nonlocal finished, started_after
        if event.kind == "finished":
            finished += 1
            if finished == 5:
                intend_cancel()
        elif event.kind == "started" and finished >= 5:
            started_after += 1

    unsubscribe = subscribe(listen)
    try:
        with pytest.raises(TerminationSignal):
            await arun(str(spec), data=data)
    finally:
        unsubscribe()
        clear_cancel_intent()
    assert 5 <= finished <= 7 and started_after == 0  # the 2 running were cancelled or ended
    async with get_client() as client:
        runs_named = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_="told to cancel%")))
    assert [run.state_name for run in runs_named] == ["Cancelled"]
