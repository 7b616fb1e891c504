"""Fast by default: with no PREFECT_API_URL, the first `promptdag run` starts a local Prefect
server in the background and says so once; later runs reuse it; the opt-out and a user's
PREFECT_API_URL are obeyed. In a PREFECT_HOME of its own, its server stopped at the end (the
rest of the suite runs with PROMPTDAG_AUTO_SERVER=false, see tests/conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptdag.remote.local_server import read_state, stop_server
from tests.deployments.conftest import ROOT

pytestmark = pytest.mark.deployments

SEED = str(ROOT / "examples" / "seed_api_request.json")
VIEW = re.compile(r"^view: (http://127\.0\.0\.1:\d+)/runs/flow-run/[0-9a-f-]{36}$", re.M)


def promptdag(home: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The CLI as a user runs it: no PREFECT_API_URL, auto server on (unless `env` says)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PREFECT_API_URL", "PROMPTDAG_AUTO_SERVER")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "promptdag.cli", *args], cwd=ROOT,
                          env={**clean, "PREFECT_HOME": str(home), **env},
                          capture_output=True, text=True, timeout=240)
    return done, time.perf_counter() - started


def test_the_first_run_starts_a_server_once_and_later_runs_reuse_it(tmp_path: Path,
                                                                     prefect_api: str):
    home = tmp_path / "prefect-home"
    try:
        first, first_s = promptdag(home, "run", SEED)
        assert first.returncode == 0, first.stderr
        assert "Started a local Prefect server for your runs" in first.stderr
        assert "promptdag server stop" in first.stderr
        assert "PROMPTDAG_AUTO_SERVER=false" in first.stderr
        info = read_state(home)
        assert info is not None and info.home == str(home.resolve())
        view = VIEW.search(first.stdout)
        assert view is not None and view.group(1) == info.url, first.stdout

        second, second_s = promptdag(home, "run", SEED, "--json")
        assert second.returncode == 0, second.stderr
        assert "Started" not in second.stderr  # announced once
        assert read_state(home) == info  # the same server
        print(f"first run {first_s:.1f} s (server start included), second {second_s:.1f} s")

        # The user's PREFECT_API_URL wins over the server promptdag started
        theirs, _ = promptdag(home, "run", SEED, PREFECT_API_URL=prefect_api)
        assert theirs.returncode == 0, theirs.stderr
        view = VIEW.search(theirs.stdout)
        assert view is not None and view.group(1) == prefect_api.removesuffix("/api")

        stopped, _ = promptdag(home, "server", "stop")
        assert "server stopped" in stopped.stderr and read_state(home) is None
    finally:
        if (left := read_state(home)) is not None:
            stop_server(left)


def test_the_opt_out_runs_on_prefects_temporary_api(tmp_path: Path):
    home = tmp_path / "prefect-home"
    done, _ = promptdag(home, "run", SEED, PROMPTDAG_AUTO_SERVER="false")
    assert done.returncode == 0, done.stderr
    assert "Started" not in done.stderr and read_state(home) is None
    assert "view:" not in done.stdout  # the temporary API has no UI to point at
