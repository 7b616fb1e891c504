"""One real `prefect server` for the deployment tests, plus prefect.yaml deployed to it and a
process worker polling its pool.

The server runs on a free loopback port with a temporary PREFECT_HOME (so its database, result
storage and profiles are the test's own). It is shared by every test of this directory to keep
CI time low, and it is gone, with this process's pending events drained, before other
directories' tests start: Prefect's events worker is a process-wide singleton bound to the
first API URL it sees, so it must not outlive this server. Child processes (the CLI,
`prefect deploy`, the worker) get `child_env`; this process talks to the same server through
Prefect's settings. Everything started here runs in its own session and is stopped by process
group: a worker ignores SIGTERM for a while, and uvicorn has children of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promptdag.remote.local_server import (
    WORK_POOL,
    ServerInfo,
    free_port,
    kill_process_group,
    server_env,
    start_server,
    stop_server,
)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots (gitignored)
PREFECT = [sys.executable, "-m", "prefect"]


@dataclass
class Server:
    info: ServerInfo
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """A command in a child process pointed at this server, from the repository root
        (`timeout`: a bound for a hung command, generous for a busy machine)."""
        return subprocess.run(list(args), cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def promptdag(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "promptdag.cli", *args, timeout=timeout)

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """A long-running child (worker, serve) in its own process group."""
        with log.open("ab") as out:
            return subprocess.Popen(list(args), cwd=ROOT, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)


def child_env(info: ServerInfo) -> dict[str, str]:
    env = server_env(info.host, info.port, Path(info.home))
    env.update(
        PREFECT_API_URL=info.api_url,
        # Stale, as after a script's chdir: prefect.yaml must not depend on it (issue 17)
        PWD="/nonexistent/stale-pwd",
        PREFECT_WORKER_QUERY_SECONDS="1",  # defaults are 10 s: faster pick-up, same code path
        PREFECT_WORKER_PREFETCH_SECONDS="2",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_LOGGING_LEVEL="WARNING",
        PROMPTDAG_DEBUG="1",
    )
    return env


def launch_server(home: Path) -> Server:
    info = start_server(port=free_port(), home=home, timeout=180)
    return Server(info, child_env(info))


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real Prefect server; this process's Prefect client points at it meanwhile."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = launch_server(tmp_path_factory.mktemp("prefect-home"))
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.info.api_url}):
            try:
                yield server
            finally:
                drain_prefect_workers()
    finally:
        stop_server(server.info)


def drain_prefect_workers() -> None:
    """Send this process's pending logs and events before the server goes (as Prefect's own
    test harness does); otherwise they retry against a closed port at exit."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            pending = APILogWorker.instance().drain()
            if inspect.isawaitable(pending):
                await pending
        except RuntimeError:  # never started
            pass
        drained: Any = EventsWorker.drain_all()
        if inspect.isawaitable(drained):
            await drained

    run_coro_as_sync(drain())


@pytest.fixture(autouse=True)
def _client_on_the_package_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test of the package server talks to it, whatever Prefect settings another fixture
    entered meanwhile in this process (the session's temporary API of tests/flows, say)."""
    if "prefect_server" not in request.fixturenames:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server: Server = request.getfixturevalue("prefect_server")
    with temporary_settings(updates={PREFECT_API_URL: server.info.api_url}):
        yield


@pytest.fixture(scope="package")
def deployed(prefect_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """prefect.yaml deployed (`prefect deploy --all`) and a process worker on its pool."""
    server = prefect_server
    created = server.run(*PREFECT, "work-pool", "create", WORK_POOL, "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    done = server.run(*PREFECT, "--no-prompt", "deploy", "--all", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = server.start(*PREFECT, "worker", "start", "--pool", WORK_POOL, log=log)
    try:
        # a worker takes a while to start on a busy machine: runs submitted before it polls
        # would wait for it inside each test's own bounds
        wait_until(lambda: pool_ready(server, WORK_POOL), 180, f"a worker polls {WORK_POOL}",
                   every=1)
        yield server
    finally:
        kill_process_group(worker.pid, grace=5)
        worker.wait(timeout=10)
        if os.environ.get("PROMPTDAG_SHOW_WORKER_LOG"):
            print(log.read_text())


def pool_ready(server: Server, name: str) -> bool:
    """Whether a worker polls the work pool `name` on `server` (its heartbeat makes the pool
    READY). The server is named: in a fixture's setup this process's Prefect settings may still
    be another fixture's (the session's temporary API of tests/flows, say)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkPoolStatus
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read() -> bool:
        with temporary_settings(updates={PREFECT_API_URL: server.info.api_url}):
            async with get_client() as client:
                try:
                    pool = await client.read_work_pool(name)
                except ObjectNotFound:
                    return False
                return pool.status == WorkPoolStatus.READY

    return asyncio.run(read())
