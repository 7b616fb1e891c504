"""A throwaway PostgreSQL cluster of our own: `initdb` into a fresh directory, `postgres` on a
free loopback port, one database for a Prefect server. For tests/scale and the batch benchmark.

Binaries come from PATH or Debian's `/usr/lib/postgresql/<version>/bin` (package `postgresql`);
no system cluster has to be running. PostgreSQL refuses to run as root, so as root its commands
run as the `postgres` OS user (`runuser`) on directories that user owns. The server runs in its
own process group and is stopped by group. Settings trade durability for speed (no fsync): the
data lives as long as one test session or one benchmark run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.server import cpu_seconds, free_port

DATABASE = "prefect"
ROLE = "prefect"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot run here; the message says why and what to install."""


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries: PATH first, then Debian's layout."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent

    def version(initdb: Path) -> int:
        name = initdb.parent.parent.name
        return int(name) if name.isdigit() else 0

    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    return versions[-1].parent if versions else None


class PostgresCluster:
    """initdb + postgres on a free port in a new temporary directory; `url` for Prefect.

    Under the system temporary directory rather than a caller's: pytest's base directory is
    private to the user running the tests, and the `postgres` user must reach the data.
    """

    def __init__(self, startup_timeout: float = 60.0) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL not found (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
                "install Debian's `postgresql` package (.ci/run does, as root)")
        self.bin = bin_dir
        self.as_user = self._as_user()
        self.root = Path(tempfile.mkdtemp(prefix="promptdag-postgres-"))
        self.port = free_port()
        self.log = self.root / "postgres.log"
        try:
            if self.as_user:
                import pwd

                owner = pwd.getpwnam("postgres")
                os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._initdb()
            self.process = self._start()
            self._create_database(startup_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Prefect (trust authentication on loopback: no password)."""
        return f"postgresql+asyncpg://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL client tool (psql, createdb, ...) as the cluster's OS user."""
        return subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)

    def psql(self, sql: str) -> str:
        done = self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE,
                        "-d", DATABASE, "-Atc", sql)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout.strip()

    def cpu_seconds(self) -> float:
        """CPU used so far by the postmaster and its backends."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGTERM (a smart shutdown: clients are gone by now) to the group, then SIGKILL."""
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            from promptdag.remote.local_server import kill_process_group

            kill_process_group(process.pid, grace=15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _as_user() -> list[str]:
        if os.geteuid() != 0:
            return []
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` OS user to "
                                      "run PostgreSQL as") from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable("running as root and there is no `runuser` to run "
                                      "PostgreSQL as the postgres user")
        return [runuser, "-u", "postgres", "--"]

    def _initdb(self) -> None:
        done = self.run("initdb", "-D", str(self.root / "data"), "-U", ROLE, "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--locale=C", timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")

    def _start(self) -> subprocess.Popen[bytes]:
        # Enough connections for a server, workers and their flow runs (Prefect pools per
        # process); no fsync: nothing here must survive a power cut.
        settings = ["-c", "listen_addresses=127.0.0.1",
                    "-c", f"unix_socket_directories={self.root}", "-c", "fsync=off",
                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=200"]
        with open(os.open(self.log, os.O_WRONLY | os.O_CREAT, 0o644), "wb") as out:
            return subprocess.Popen(
                [*self.as_user, str(self.bin / "postgres"), "-D", str(self.root / "data"),
                 "-p", str(self.port), *settings],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
                start_new_session=True,  # its own process group: stopped by group
            )

    def _create_database(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done = self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE,
                            DATABASE)
            if done.returncode == 0:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-600:] if self.log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not start on port {self.port}: "
                                   f"{done.stderr.strip()}\n{tail}")
            time.sleep(0.2)
