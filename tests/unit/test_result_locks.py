"""The result locks behind "never pay twice": one holder at a time, waiting without blocking
the event loop, and a lock whose holder died is free again."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from promptdag.tasks.result_locks import LocalLockManager


async def test_one_holder_at_a_time_and_the_other_waits_without_blocking_the_loop(
    tmp_path: Path,
):
    locks = LocalLockManager(tmp_path)
    order: list[str] = []

    async def hold(name: str) -> None:
        assert await locks.aacquire_lock("key", name)
        order.append(f"{name} in")
        await asyncio.sleep(0.2)  # only possible if the waiter does not block the loop
        order.append(f"{name} out")
        locks.release_lock("key", name)

    await asyncio.gather(hold("a"), hold("b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    assert not locks.is_locked("key")


def test_a_lock_of_a_dead_process_is_free(tmp_path: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "key.lock").write_text(json.dumps(
        {"holder": "killed", "pid": dead.pid, "host": socket.gethostname(), "expires": None}))
    locks = LocalLockManager(tmp_path)
    assert not locks.is_locked("key")
    assert locks.acquire_lock("key", "me", acquire_timeout=1)
    assert locks.is_lock_holder("key", "me")


def test_a_lock_of_a_live_process_holds_until_it_expires(tmp_path: Path):
    (tmp_path / "key.lock").write_text(json.dumps(
        {"holder": "other", "pid": os.getpid(), "host": socket.gethostname(),
         "expires": time.time() + 0.3}))
    locks = LocalLockManager(tmp_path)
    assert not locks.acquire_lock("key", "me", acquire_timeout=0.1)
    assert locks.acquire_lock("key", "me", acquire_timeout=2)


def test_an_empty_lock_file_left_by_a_killed_writer_is_stale_after_a_while(tmp_path: Path):
    path = tmp_path / "key.lock"
    path.write_text("")
    locks = LocalLockManager(tmp_path)
    assert locks.is_locked("key")  # being written, perhaps
    old = time.time() - 60
    os.utime(path, (old, old))
    assert not locks.is_locked("key")
