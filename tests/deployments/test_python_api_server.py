"""The Python API reaches Prefect as the CLI does: with the local server running in PREFECT_HOME
and no PREFECT_API_URL, `run_workflow`, `run_objective` and the client use that server (never
Prefect's temporary server on the same SQLite file), two concurrent callers included."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import UUID

import pytest

from tests.deployments.conftest import ROOT, Server

pytestmark = pytest.mark.deployments

WORKFLOW = textwrap.dedent("""
    import os
    from promptdag import run_workflow
    result = run_workflow("examples/seed_api_request.json")
    print(result.flow_run_id, result.status, os.environ["PREFECT_API_URL"])  # children's too
""")
# Prefect imported before the call: its settings are fixed by then, the API still finds the server
OBJECTIVE = textwrap.dedent("""
    import prefect
    from promptdag.api import run_objective
    from promptdag.remote import client
    result = run_objective("Name two uses of AI in hospitals", config={"depth": 1})
    run_id = result.rounds[0].result.flow_run_id
    print(run_id, result.status, client.get_status(run_id).url)
""")


def python(server: Server, code: str) -> subprocess.Popen[str]:
    """A Python script as a user runs it: PREFECT_HOME holds a running local server, no
    PREFECT_API_URL, and no server may be started (so only finding the running one works)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=server.info.home, PROMPTDAG_AUTO_SERVER="false")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_concurrent_python_callers_run_on_the_running_local_server(prefect_server: Server):
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    assert Path(prefect_server.info.home, "promptdag-server.json").exists()  # as `server start`
    callers = [python(prefect_server, WORKFLOW), python(prefect_server, OBJECTIVE)]
    outputs = [caller.communicate(timeout=240) for caller in callers]
    for caller, (_, err) in zip(callers, outputs, strict=True):
        assert caller.returncode == 0, err
        assert "database is locked" not in err
    workflow_run, workflow_status, api_url = outputs[0][0].split()
    objective_round, objective_status, view = outputs[1][0].split()
    assert (workflow_status, objective_status) == ("completed", "completed")
    assert api_url == prefect_server.info.api_url
    assert view.startswith(prefect_server.info.url)  # the client found it too

    async def names() -> list[str]:
        async with get_client() as client:  # this process: the package server
            return [(await client.read_flow_run(UUID(run))).name
                    for run in (workflow_run, objective_round)]

    assert run_coro_as_sync(names())[0] == "AI Healthcare Research"
