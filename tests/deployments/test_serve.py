"""`promptdag server` and `python -m promptdag.deployments.serve`: a server of its own, no worker.

Serving registers the same deployment names as `prefect deploy`, so this runs against a second
server (started and stopped with the `promptdag server` commands) rather than the shared one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptdag.remote.local_server import (
    STATE_FILE,
    free_port,
    kill_process_group,
    process_alive,
    read_state,
)
from tests.deployments.conftest import ROOT, Server, child_env
from tests.waiting import wait_until

pytestmark = pytest.mark.deployments


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server started with `promptdag server start`, stopped with `promptdag server stop`."""
    import os
    import subprocess

    home = tmp_path_factory.mktemp("served-home")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")

    def promptdag(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "promptdag.cli", "server", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    port = free_port()
    started = promptdag("start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"export PREFECT_API_URL=http://127.0.0.1:{port}/api"
    info = read_state(home)
    assert info is not None and info.port == port
    try:
        yield Server(info, child_env(info))
    finally:
        stopped = promptdag("stop")
        assert stopped.returncode == 0 and "server stopped" in stopped.stderr
        wait_until(lambda: not process_alive(info.pid), 120, "the stopped server is gone")
        assert not (home / STATE_FILE).exists()
        again = promptdag("status")
        assert again.returncode == 2 and "promptdag server start" in again.stderr


def test_server_status_and_env_describe_the_running_server(cli_server: Server):
    status = cli_server.promptdag("server", "status")
    assert status.returncode == 0 and "healthy" in status.stdout, status.stderr
    env = cli_server.promptdag("server", "env")
    assert env.stdout.strip() == f"export PREFECT_API_URL={cli_server.info.api_url}"
    twice = cli_server.promptdag("server", "start", "--port", str(cli_server.info.port))
    assert twice.returncode == 2 and "already running" in twice.stderr
    # `server start` created the pool prefect.yaml deploys to
    pool = cli_server.run(sys.executable, "-m", "prefect", "work-pool", "inspect",
                          "promptdag-process")
    assert pool.returncode == 0, pool.stdout + pool.stderr


def test_served_deployments_run_without_a_worker(cli_server: Server, tmp_path: Path):
    log = tmp_path / "serve.log"
    serve = cli_server.start(sys.executable, "-m", "promptdag.deployments.serve", log=log)
    try:
        def registered() -> bool:
            names = ("plan-execute-reflect/objective", "run-workflow/workflow",
                     "plan-execute-reflect/daily-briefing")
            return all(cli_server.run(sys.executable, "-m", "prefect", "deployment", "inspect",
                                      name).returncode == 0 for name in names)

        wait_until(registered, 240, "serve registered its deployments", every=1)
        started = time.monotonic()
        done = cli_server.promptdag("submit", str(ROOT / "examples" / "seed_api_request.json"),
                                    "--wait", "--json", timeout=240)
        assert done.returncode == 0, done.stderr + log.read_text()
        print(f"\nserve: trigger to Completed in {time.monotonic() - started:.1f} s")
        assert json.loads(done.stdout)["status"] == "completed"
    finally:
        kill_process_group(serve.pid, grace=10)  # serve stops on SIGTERM
        serve.wait(timeout=10)
