"""No silent loss: notice when a finished task's result could not be persisted, and check the
result storage before a run starts.

Prefect persists a task's result when its transaction commits, after the task run is already
`Completed`; a failed write (`No space left on device`, a read-only directory) is logged and the
transaction rolled back, and the run goes on as if all were well. The rollback runs the task's
`on_rollback` hooks inside the commit's `except` block, so `note_unsaved` sees the error and
records it under the task run's id; the scheduler reads it back (`unsaved_reason`) and puts a
warning on the task. (Task runs placed on a Dask cluster run their hooks there: not seen here.)
"""

from __future__ import annotations

import errno
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from promptdag.errors import ConfigError

MIN_FREE_BYTES = 1_000_000  # below this the storage is as good as full
_unsaved: dict[UUID, str] = {}


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "the result could not be written"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # "No space left on device", "Read-only file system"
    return f"{type(exc).__name__}: {exc}"


async def note_unsaved(transaction: Any) -> None:
    """`on_rollback` hook: the committed result was not persisted; remember why."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is not None:
        _unsaved[context.task_run.id] = describe(sys.exc_info()[1])


note_unsaved.log_on_run = False  # type: ignore[attr-defined]  # Prefect's switch for hook logs


def unsaved_reason(task_run_id: UUID | None) -> str | None:
    """Why this task run's result was not persisted (None when it was, or is unknown)."""
    return _unsaved.pop(task_run_id, None) if task_run_id is not None else None


def storage_path() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser()


def check_storage(path: Path | None = None) -> None:
    """Raise ConfigError (exit 2) when results could not be saved: the local result storage is
    read-only, not a directory, or full. Remote storage blocks are not checked."""
    from prefect.settings import get_current_settings

    if get_current_settings().results.default_storage_block is not None:
        return
    folder = path or storage_path()
    hint = "free some space or point PREFECT_LOCAL_STORAGE_PATH elsewhere"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".promptdag-write-check-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"x" * 4096)
        finally:
            probe.unlink(missing_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ConfigError(f"result storage {folder} is full ({describe(exc)}): {hint}"
                              ) from None
        raise ConfigError(f"result storage {folder} is not writable ({describe(exc)}): make "
                          "it writable or point PREFECT_LOCAL_STORAGE_PATH elsewhere") from None
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"result storage {folder} is full ({free} bytes free): {hint}")
