"""Shared test parts: one temporary Prefect API per session (for the tests that ask for it),
result storage of each test's own (so no test reuses another's persisted results), and a
recording provider registered through the public registry."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Offline machine: no telemetry attempts from the temporary Prefect server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# One temporary PREFECT_HOME for the whole session, subprocesses included, set before Prefect is
# imported: no test writes into the user's real ~/.prefect (specs, results, profiles, servers).
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="promptdag-tests-prefect-home-")
os.environ.pop("PREFECT_API_URL", None)  # the user's server is not the tests'
# No background server started by a CLI run (promptdag/remote/autoserver.py): runs stay on the API a
# test gives them; tests/deployments/test_auto_server.py turns it on in its own PREFECT_HOME.
os.environ["PROMPTDAG_AUTO_SERVER"] = "false"
os.environ.pop("PREFECT_PROFILES_PATH", None)
# Prefect's temporary API gets 20 s to start by default; a loaded CI machine (two test workers,
# their servers and subprocesses on 2 cores) has taken longer. A wait, not a measure.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from promptdag.errors import PermanentProviderError
from promptdag.llm.base import Completion, CompletionRequest, Usage
from promptdag.llm.registry import register_provider
from promptdag.tasks.result_locks import SHARED_FOLDER_PREFIX, SHARED_MEMORY


@dataclass
class Call:
    task: str
    start: float
    end: float = 0.0


@dataclass
class ProbeLog:
    """Intervals of real model calls, measured inside the model (where a slot is really busy)."""

    calls: list[Call] = field(default_factory=list)

    def starts(self) -> list[str]:
        return [c.task for c in sorted(self.calls, key=lambda c: c.start)]

    def max_overlap(self) -> int:
        edges = sorted(
            [(c.start, 1) for c in self.calls] + [(c.end, -1) for c in self.calls],
            key=lambda e: (e[0], e[1]),
        )
        current = best = 0
        for _, step in edges:
            current += step
            best = max(best, current)
        return best

    def call(self, task: str) -> Call:
        return next(c for c in self.calls if c.task == task)


PROBE = ProbeLog()


class ProbeModel:
    """`probe:<anything>`: sleeps `latency_s`, records when it ran; `permanent: true` fails every
    call, `fail_tasks: [names]` the calls of those tasks."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = f"probe:{name}"
        self.options = options

    async def complete(self, request: CompletionRequest) -> Completion:
        call = Call(task=request.task_name or "?", start=time.perf_counter())
        PROBE.calls.append(call)
        try:
            if self.options.get("permanent") or request.task_name in self.options.get(
                "fail_tasks", []
            ):
                raise PermanentProviderError("probe: permanent failure (bad request)")
            await asyncio.sleep(float(self.options.get("latency_s", 0)))
            digest = hashlib.sha256(request.prompt.encode()).hexdigest()[:8]
            return Completion(
                text=f"probe answer for {request.task_name} ({digest})",
                model=self.name,
                usage=Usage(input_tokens=1, output_tokens=1),
            )
        finally:
            call.end = time.perf_counter()


register_provider("probe", ProbeModel)
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)
SESSION_STARTED = time.time()


def remove_lock_folders() -> None:
    """The empty lock folders this session's PREFECT_HOMEs left in shared memory (one per home:
    tasks/result_locks.py); a folder in use is not empty, and is made again when needed."""
    for folder in SHARED_MEMORY.glob(f"{SHARED_FOLDER_PREFIX}*"):
        try:
            if folder.stat().st_mtime >= SESSION_STARTED:
                folder.rmdir()
        except OSError:
            pass


atexit.register(remove_lock_folders)


@pytest.fixture
def probe() -> ProbeLog:
    PROBE.calls.clear()
    return PROBE


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A temporary local Prefect API; yields its URL (for CLI subprocesses)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # a bound, not a delay: a new database's migrations on a busy machine can take a minute
    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(autouse=True)
def result_storage(tmp_path: Path) -> Iterator[Path]:
    """Persisted task results go to this test's own directory."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    storage = tmp_path / "prefect-storage"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        yield storage


# Directories whose tests share one expensive server run on one xdist worker, one after the
# other (each worker would otherwise start its own, and restart it whenever its tests were
# interleaved with others); everything else is spread test by test. tests/deployments is half
# of the suite's time: its files go in two groups of about equal time (measured), one Prefect
# server each, so both workers share the work. (pytest 9.2 silently ignores the groups:
# pyproject pins below it.)
SERVER_GROUPS = {"deployments": "prefect-server", "scale": "postgresql", "real": "llama-server"}
SECOND_SERVER = {"test_artifacts.py", "test_auto_server.py", "test_busy_server.py",
                 "test_dask.py", "test_deploy_and_run.py", "test_lost_server.py",
                 "test_lost_worker.py"}  # tests/deployments files of the second group


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = SERVER_GROUPS.get(item.path.parent.name)
        if group is not None:
            if item.path.name in SECOND_SERVER:
                group += "-2"
            item.add_marker(pytest.mark.xdist_group(group))
