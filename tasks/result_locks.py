"""Never pay twice: one lock per result key, shared by every process on this machine.

Prefect's transactions with `SERIALIZABLE` isolation take a lock on a task's cache key before
the task runs and release it once the result is committed; a second run asking the same thing
waits for the lock, then finds the committed result and reuses it (a `Cached` state). Prefect's
`FileSystemLockManager` is the model, with two fixes that matter here:

- a lock whose holder was killed (`kill -9`, a crashed worker) is stale, not held forever: the
  lock file records the holder's pid and host, and a lock of a dead process on this host is free;
- a coroutine that loses the race for a lock file waits with `await` (Prefect's async path falls
  back to its blocking wait, which would freeze the event loop the holder runs on).

Lock files live in shared memory (`/dev/shm/promptdag-locks-<uid>-<hash of PREFECT_HOME>`),
where a lock belongs: machine-local, gone at reboot, and cheap (a file created on a disk
costs more, once per task run); under `PREFECT_HOME/promptdag/locks` where there is no
/dev/shm. PREFECT_HOME is read at call time, like Prefect's own. A lock this process holds
without expiry is known in memory, so checking and releasing it read no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from prefect.locking.protocol import LockManager

POLL_SECONDS = 0.05
EMPTY_LOCK_SECONDS = 10
_HOST = socket.gethostname()
SHARED_MEMORY = Path("/dev/shm")
SHARED_FOLDER_PREFIX = f"promptdag-locks-{os.getuid()}-"  # + a hash of PREFECT_HOME


def lock_directory() -> Path:
    from prefect.settings import PREFECT_HOME

    return _directory_for(str(PREFECT_HOME.value()))


@functools.lru_cache(maxsize=8)
def _directory_for(prefect_home: str) -> Path:
    home = Path(prefect_home).expanduser()
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK):
        digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
        return SHARED_MEMORY / f"{SHARED_FOLDER_PREFIX}{digest}"
    return home / "promptdag" / "locks"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class LocalLockManager(LockManager):
    """File locks that die with their holder's process (see module docstring)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._held: dict[Path, str] = {}  # lock file -> holder, for locks taken without expiry

    @property
    def directory(self) -> Path:
        return self._directory or lock_directory()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.lock"

    def _read(self, key: str) -> dict[str, object] | None:
        try:
            data = json.loads(self._path(key).read_bytes() or b"{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written: treat as held
        return data if isinstance(data, dict) else {}

    def _stale(self, info: dict[str, object], key: str) -> bool:
        if not info:  # empty: its writer died between creating and writing it, or is writing
            try:
                return time.time() - self._path(key).stat().st_mtime > EMPTY_LOCK_SECONDS
            except FileNotFoundError:
                return True
        expires = info.get("expires")
        if isinstance(expires, (int, float)) and expires < time.time():
            return True
        pid, host = info.get("pid"), info.get("host")
        return host == _HOST and isinstance(pid, int) and not _alive(pid)

    def _try(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        """Take the lock if it is free (or stale); True when `holder` holds it afterwards.

        The common case (nobody holds it) is one exclusive create and one write; the holder's
        record is read only when the file exists."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileNotFoundError:  # the first lock in this directory
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return self._try(key, holder, hold_timeout)
        except FileExistsError:
            info = self._read(key)
            if info is None:  # released in between: try again at the next poll
                return False
            if info.get("holder") == holder:
                return True
            if not self._stale(info, key):
                return False
            path.unlink(missing_ok=True)
            return self._try(key, holder, hold_timeout)  # free now: take it (or lose the race)
        record = {"holder": holder, "pid": os.getpid(), "host": _HOST,
                  "expires": time.time() + hold_timeout if hold_timeout else None}
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(record, file)
        except OSError:  # a full disk: go on without the lock rather than fail the task
            path.unlink(missing_ok=True)
            return True
        if not hold_timeout:  # nobody takes it from a live holder: no need to read it back
            self._held[path] = holder
        return True

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    def release_lock(self, key: str, holder: str) -> None:
        if self.is_lock_holder(key, holder):
            path = self._path(key)
            self._held.pop(path, None)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def is_locked(self, key: str) -> bool:
        info = self._read(key)
        return info is not None and not self._stale(info, key)

    def is_lock_holder(self, key: str, holder: str) -> bool:
        held = self._held.get(self._path(key))
        if held is not None:
            return held == holder
        info = self._read(key)
        return info is not None and info.get("holder") == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True


LOCKS = LocalLockManager()
