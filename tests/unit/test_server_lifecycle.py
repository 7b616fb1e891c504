"""`promptdag server stop|status` act only on the process that is the recorded server: a state
file whose pid now names another process (the server was killed, its pid reused) is removed
with one line and that process survives; `status` exits non-zero when the server is silent.
Real processes, the real CLI in a child process, a PREFECT_HOME of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptdag.engine.process_identity import ProcessIdentity, identity
from promptdag.remote.local_server import (
    STATE_FILE,
    ServerInfo,
    free_port,
    process_alive,
    read_state,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated long-lived process leading its own process group (as the server did)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                               start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def server_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run([sys.executable, "-m", "promptdag.cli", "server", *args], cwd=ROOT,
                          env={**env, "PREFECT_HOME": str(home)}, capture_output=True,
                          text=True, timeout=60)


def record(home: Path, pid: int, process: ProcessIdentity | None) -> ServerInfo:
    info = ServerInfo(pid=pid, host="127.0.0.1", port=free_port(), home=str(home),
                      log=str(home / "promptdag-server.log"), process=process, health="true")
    (home / STATE_FILE).write_text(info.model_dump_json())
    return info


def a_killed_server() -> ProcessIdentity:
    """What the state file held for a server killed since (its pid now reused)."""
    return ProcessIdentity(started="12345",
                           command=[sys.executable, "-m", "prefect", "server", "start"])


def test_stop_with_a_stale_file_whose_pid_is_another_process_spares_it(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
):
    record(tmp_path, bystander.pid, a_killed_server())
    stopped = server_cli(tmp_path, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert bystander.poll() is None and process_alive(bystander.pid)  # not signalled
    lines = stopped.stderr.strip().splitlines()
    assert "removed a stale server record" in lines[0] and "nothing was signalled" in lines[0]
    assert lines[1:] == ["no promptdag server is running"]
    assert not (tmp_path / STATE_FILE).exists()


def test_a_file_from_an_older_version_is_never_acted_on(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
):
    record(tmp_path, bystander.pid, None)
    stopped = server_cli(tmp_path, "stop")
    assert stopped.returncode == 0 and bystander.poll() is None
    assert "nothing was signalled" in stopped.stderr and read_state(tmp_path) is None


def test_status_of_a_stale_file_says_none_runs(tmp_path: Path, bystander: subprocess.Popen[bytes]):
    record(tmp_path, bystander.pid, a_killed_server())
    status = server_cli(tmp_path, "status")
    assert status.returncode == 2
    assert "removed a stale server record" in status.stderr
    assert "promptdag server start" in status.stderr and bystander.poll() is None


def test_status_exits_1_when_the_server_process_does_not_answer_and_stop_stops_it(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
):
    # The recorded identity is the live process's own: it *is* the server, on a silent port.
    record(tmp_path, bystander.pid, identity(bystander.pid))
    status = server_cli(tmp_path, "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "NOT answering" in status.stdout and "does not answer" in status.stderr
    stopped = server_cli(tmp_path, "stop")
    assert stopped.returncode == 0 and "server stopped" in stopped.stderr
    assert bystander.wait(timeout=30) is not None  # this one was the server: it is gone
    assert not (tmp_path / STATE_FILE).exists()
