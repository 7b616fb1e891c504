"""The README's "At scale" recipe, for real: a PostgreSQL server, a Prefect server on it,
prefect.yaml deployed, and two process workers on the `promptdag-process` pool.

PostgreSQL comes from Debian's `postgresql` package (`.ci/run` installs it): the test runs its
own cluster (`initdb` into a fresh data directory, `postgres` on a free loopback port, its
socket in that directory too), so no system cluster has to be running. As root, PostgreSQL
refuses to run, so its commands run as the `postgres` OS user (`runuser`) on directories that
user owns. Without the binaries (or, as root, without a `postgres` user) the tests skip and say
why. Every server and worker runs in its own process group and is stopped by group at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptdag.server import WORK_POOL, free_port, kill_process_group, start_server, stop_server
from tests.deployments.conftest import (
    PREFECT,
    ROOT,
    Server,
    child_env,
    drain_prefect_workers,
)

DATABASE = "prefect"
ROLE = "prefect"
WORKERS = ("scale-worker-1", "scale-worker-2")
# Calls to the simulated model in flight at once, over every worker: a Prefect global
# concurrency limit in the server (tasks/provider_limits.py), so it binds both workers' runs.
SIMULATED_IN_FLIGHT = 4
NO_POSTGRES = ("PostgreSQL not found (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin):"
               " install Debian's `postgresql` package (.ci/run does, as root)")


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries: PATH first, then Debian's layout."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1].parent if versions else None


@dataclass
class Postgres:
    """A running cluster of our own."""

    bin: Path
    port: int
    root: Path
    process: subprocess.Popen[bytes]
    as_user: list[str]

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Prefect (trust authentication on loopback: no password)."""
        return f"postgresql+asyncpg://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True,
                              text=True, timeout=60, cwd=self.root)


def start_postgres(root: Path) -> Postgres:
    """initdb + postgres on a free port under `root`; returns once the database is created."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(NO_POSTGRES)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` OS user to run PostgreSQL")
        if runuser is None:
            pytest.skip("running as root and there is no `runuser` to run PostgreSQL as postgres")
        as_user = [runuser, "-u", "postgres", "--"]
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    init = subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust",
         "-E", "UTF8", "--no-sync", "--locale=C"],
        capture_output=True, text=True, timeout=120, cwd=root,
    )
    assert init.returncode == 0, f"initdb failed: {init.stdout}{init.stderr}"
    log = root / "postgres.log"
    with contextlib.suppress(FileNotFoundError):
        log.unlink()
    # A test cluster: no fsync (nothing here must survive a power cut), enough connections
    # for a server, two workers and their flow runs (Prefect pools connections per process).
    settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200"]
    with open(os.open(log, os.O_WRONLY | os.O_CREAT, 0o644), "wb") as out:
        process = subprocess.Popen(
            [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), *settings],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
            start_new_session=True,  # its own process group: stopped by group
        )
    pg = Postgres(bin_dir, port, root, process, as_user)
    deadline = time.monotonic() + 60
    while True:
        created = pg.run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", ROLE, DATABASE)
        if created.returncode == 0:
            return pg
        if process.poll() is not None or time.monotonic() > deadline:
            stop_postgres(pg)
            tail = log.read_text(errors="replace")[-600:] if log.exists() else "no log"
            raise AssertionError(f"PostgreSQL did not start on port {port}: {created.stderr}"
                                 f"\n{tail}")
        time.sleep(0.2)


def stop_postgres(pg: Postgres) -> None:
    # SIGTERM is a smart shutdown: it waits for clients, and every client is gone by now.
    kill_process_group(pg.process.pid, grace=15)
    with contextlib.suppress(subprocess.TimeoutExpired):
        pg.process.wait(timeout=5)


@pytest.fixture(scope="package")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of this package's own, in a temporary directory (removed after).

    Under the system temporary directory rather than pytest's: pytest's base directory is
    private to the user running the tests, and the `postgres` user must reach its data.
    """
    root = Path(tempfile.mkdtemp(prefix="promptdag-postgres-"))
    try:
        pg = start_postgres(root)
        try:
            yield pg
        finally:
            stop_postgres(pg)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Cluster:
    """A Prefect server on PostgreSQL, prefect.yaml deployed, two process workers."""

    server: Server
    postgres: Postgres
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


@pytest.fixture(scope="package")
def cluster(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`prefect server start` on the PostgreSQL database, `prefect deploy --all`, and two
    `prefect worker start --pool promptdag-process --limit 1` (one flow run at a time each,
    so shards submitted together spread over both). This process's client points at the
    server meanwhile."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home-postgres")
    info = start_server(port=free_port(), home=home, timeout=120,
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
                yield Cluster(server, postgres, logs)
            finally:
                drain_prefect_workers()
    finally:
        for worker in workers:
            kill_process_group(worker.pid, grace=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=10)
        stop_server(info)
