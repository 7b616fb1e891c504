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
    def held_by_another(expires: float) -> None:
        (tmp_path / "key.lock").write_text(json.dumps(
            {"holder": "other", "pid": os.getpid(), "host": socket.gethostname(),
             "expires": expires}))

    locks = LocalLockManager(tmp_path)
    held_by_another(time.time() + 600)
    assert not locks.acquire_lock("key", "me", acquire_timeout=0.1)
    held_by_another(time.time() + 0.3)
    assert locks.acquire_lock("key", "me", acquire_timeout=60)  # a wait: it ends at expiry


def test_an_empty_lock_file_left_by_a_killed_writer_is_stale_after_a_while(tmp_path: Path):
    path = tmp_path / "key.lock"
    path.write_text("")
    locks = LocalLockManager(tmp_path)
    assert locks.is_locked("key")  # being written, perhaps
    old = time.time() - 60
    os.utime(path, (old, old))
    assert not locks.is_locked("key")


def test_locks_live_in_shared_memory_one_folder_per_prefect_home(tmp_path: Path):
    from prefect.settings import PREFECT_HOME, temporary_settings

    from promptdag.tasks.result_locks import SHARED_MEMORY, lock_directory

    with temporary_settings({PREFECT_HOME: tmp_path / "one"}):
        one = lock_directory()
    with temporary_settings({PREFECT_HOME: tmp_path / "two"}):
        two = lock_directory()
    assert one != two
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK):
        assert one.parent == SHARED_MEMORY and one.name.startswith(f"promptdag-locks-{os.getuid()}")
    else:
        assert one == tmp_path / "one" / "promptdag" / "locks"


def test_a_held_lock_is_known_without_reading_it_and_released_by_its_holder_only(
    tmp_path: Path,
):
    locks = LocalLockManager(tmp_path)
    assert locks.acquire_lock("key", "me")
    (tmp_path / "key.lock").write_text("{}")  # the answers below do not come from the file
    assert locks.is_lock_holder("key", "me") and not locks.is_lock_holder("key", "you")
    locks.release_lock("key", "you")
    assert (tmp_path / "key.lock").exists()
    locks.release_lock("key", "me")
    assert not (tmp_path / "key.lock").exists()
    assert locks.acquire_lock("key", "you", acquire_timeout=1)
    assert not locks.is_lock_holder("key", "me")
