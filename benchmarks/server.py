"""One local Prefect server for a whole benchmark run, and how to tell when it is idle.

Every Prefect-based measurement talks to the same `prefect server start` (SQLite, a temporary
`PREFECT_HOME`), so no measurement pays the ephemeral API's start-up and all of them see the
same server. The server keeps working after a run ends (it records the run's events); before
each measured run we wait until it is idle, so one run's backlog is not charged to the next.
Process figures come from /proc (Linux); elsewhere they are reported as unknown.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_env(home: str | None = None) -> dict[str, str]:
    """Environment for a Prefect child process: offline, no console chatter, own home."""
    env = dict(os.environ)
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL",
        PREFECT_LOGGING_INTERNAL_LEVEL="CRITICAL",
        PREFECT_SERVER_LOGGING_LEVEL="CRITICAL",
    )
    if home is not None:
        env["PREFECT_HOME"] = home
    env.pop("PREFECT_API_URL", None)
    return env


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (read from /proc)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task_dir in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task_dir / "children").read_text().split()]
            except OSError:
                pass
    return tree


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """CPU time (user + system) used so far by `pid` and its descendants; with `reaped`, also
    that of children that have exited (their time moves to their parent's cutime/cstime when
    reaped: PostgreSQL backends come and go)."""
    last = 15 if reaped else 13
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:last]) / _TICKS
    return total


def peak_rss_mib(pid: int) -> float | None:
    """The peak resident set (VmHWM) of `pid` and its descendants, in MiB."""
    total = 0.0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total or None


class LocalServer:
    """`prefect server start` on a free port with a temporary home; stop() ends its group."""

    def __init__(self, startup_timeout: float = 90.0) -> None:
        self.home = tempfile.mkdtemp(prefix="promptdag-bench-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.log = Path(self.home) / "server.log"
        prefect = Path(sys.executable).with_name("prefect")
        command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=quiet_env(self.home),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        self.startup_seconds = self._wait_healthy(startup_timeout)

    def _wait_healthy(self, timeout: float) -> float:
        clock = time.perf_counter()
        while time.perf_counter() - clock < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - clock
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prefect server did not answer /api/health in {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def peak_rss_mib(self) -> float | None:
        return peak_rss_mib(self.process.pid)

    def wait_idle(self, timeout: float = 300.0, window: float = 0.5) -> float:
        """Block until the server uses < 10% of a core over `window`; the seconds waited."""
        clock = time.perf_counter()
        if not Path("/proc").exists():
            time.sleep(2.0)
            return 2.0
        while time.perf_counter() - clock < timeout:
            before = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - before < 0.1 * window:
                break
        return time.perf_counter() - clock

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
