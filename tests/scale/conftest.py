"""The "At scale" recipe of docs/scaling.md, for real: a PostgreSQL server, a Prefect server on it,
prefect.yaml deployed, and two process workers on the `promptdag-process` pool.

PostgreSQL comes from Debian's `postgresql` package (`.ci/run` installs it): the tests run a
cluster of their own (benchmarks/postgres.py: `initdb` into a fresh data directory, `postgres`
on a free loopback port; as root, as the `postgres` OS user), so no system cluster has to be
running. Without the binaries (or, as root, without a `postgres` user) the tests skip and say
why. Every server and worker runs in its own process group and is stopped by group at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.postgres import PostgresCluster, PostgresUnavailable
from promptdag.remote.local_server import (
    WORK_POOL,
    free_port,
    kill_process_group,
    start_server,
    stop_server,
)
from tests.deployments.conftest import (
    PREFECT,
    ROOT,
    Server,
    child_env,
    drain_prefect_workers,
)
from tests.waiting import wait_until

WORKERS = ("scale-worker-1", "scale-worker-2")
# Calls to the simulated model in flight at once, over every worker: a Prefect global
# concurrency limit in the server (tasks/provider_limits.py), so it binds both workers' runs.
SIMULATED_IN_FLIGHT = 4


@pytest.fixture(scope="package")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this package's own (benchmarks/postgres.py); skips, saying why,
    where PostgreSQL cannot run."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with cluster:
        yield cluster


@dataclass
class Cluster:
    """A Prefect server on PostgreSQL, prefect.yaml deployed, two process workers."""

    server: Server
    postgres: PostgresCluster
    worker_logs: dict[str, Path]


def start_worker(server: Server, name: str, log: Path) -> subprocess.Popen[bytes]:
    """A process worker named `name` that runs one flow run at a time, in its own group.

    At INFO, a worker logs the id of each flow run it submits: the test reads that.
    """
    env = {**server.env, "PREFECT_LOGGING_LEVEL": "INFO",
           "PROMPTDAG_PROVIDER_LIMITS": json.dumps(
               {"simulated": {"max_in_flight": SIMULATED_IN_FLIGHT}})}
    with log.open("ab") as out:
        return subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", WORK_POOL, "--name", name, "--limit", "1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def online_workers() -> set[str]:
    """Names of the workers whose heartbeats the server has on the pool."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus

    async def read() -> set[str]:
        async with get_client() as client:
            workers = await client.read_workers_for_work_pool(WORK_POOL)
        return {w.name for w in workers if w.status == WorkerStatus.ONLINE}

    return asyncio.run(read())


@pytest.fixture(scope="package")
def cluster(
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """`prefect server start` on the PostgreSQL database, `prefect deploy --all`, and two
    `prefect worker start --pool promptdag-process --limit 1` (one flow run at a time each,
    so shards submitted together spread over both). This process's client points at the
    server meanwhile."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home-postgres")
    info = start_server(port=free_port(), home=home, timeout=180,
                        env={"PREFECT_API_DATABASE_CONNECTION_URL": postgres.url})
    server = Server(info, child_env(info))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: info.api_url}):
            try:
                created = server.run(*PREFECT, "work-pool", "create", WORK_POOL,
                                     "--type", "process")
                assert created.returncode == 0, created.stdout + created.stderr
                done = server.run(*PREFECT, "--no-prompt", "deploy", "--all", timeout=180)
                assert done.returncode == 0, done.stdout + done.stderr
                logs = {name: tmp_path_factory.mktemp(name) / "worker.log" for name in WORKERS}
                workers += [start_worker(server, name, logs[name]) for name in WORKERS]
                # both polling before any shard is submitted: a worker still starting on a
                # busy machine would leave both shards to the other, one after the other
                wait_until(lambda: set(WORKERS) <= online_workers(), 180,
                           f"workers {WORKERS} poll {WORK_POOL}", every=1)
                yield Cluster(server, postgres, logs)
            finally:
                drain_prefect_workers()
    finally:
        for worker in workers:
            kill_process_group(worker.pid, grace=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=10)
        stop_server(info)
