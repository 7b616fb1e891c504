"""Runs whose process is gone are marked Crashed by the next command that sees them.

A local run lives in the process that started it (`promptdag run`, the Python API). When that
process dies (`kill -9`, a lost machine, a server that went away and took the run's last state
reports with it), the server keeps the run Running for ever: nothing is left to say otherwise.
So the process that starts or retries a run records itself on the flow run, in Prefect's own
`infrastructure_pid` field, as `promptdag:<host>:<pid>:<start time>` (the start time tells a
reused pid apart). The next command that reads the run on the same host (a rerun, which then
resumes it; `promptdag runs`; `promptdag status`) checks that process, and when it is gone
sets the run Crashed, saying why. Runs of deployments (their worker records its own pid) and
runs started on another host are left to their worker and to `promptdag retry`.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from uuid import UUID

from promptdag.engine.process_identity import identity

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

OWNER_PREFIX = "promptdag:"
_UNFINISHED = {"RUNNING", "PENDING", "CANCELLING"}


def owner_mark(pid: int | None = None) -> str:
    """What a run's process writes on its flow run: host, pid and the process's start."""
    pid = pid or os.getpid()
    me = identity(pid)
    return f"{OWNER_PREFIX}{socket.gethostname()}:{pid}:{me.started if me else ''}"


async def claim(client: PrefectClient, flow_run_id: UUID) -> None:
    """Record this process as the one running `flow_run_id`."""
    await client.update_flow_run(flow_run_id, infrastructure_pid=owner_mark())


def orphaned(run: FlowRun) -> str | None:
    """Why `run` is an orphan (its recorded process on this host is gone), else None."""
    state = run.state_type.value if run.state_type else ""
    mark = run.infrastructure_pid or ""
    if state not in _UNFINISHED or not mark.startswith(OWNER_PREFIX):
        return None
    parts = mark.removeprefix(OWNER_PREFIX).rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    host, pid, started = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return None  # another machine's process: it cannot be checked from here
    now = identity(pid)
    if now is not None and now.started == started:
        return None  # still running
    return f"its process (pid {pid} on {host}) is gone"


async def crash_orphans(client: PrefectClient, runs: list[FlowRun]) -> list[FlowRun]:
    """`runs`, with each orphan set Crashed on the server (and read back)."""
    from prefect.states import Crashed

    seen = []
    for run in runs:
        why = orphaned(run)
        if why is not None:
            await client.set_flow_run_state(
                run.id,
                Crashed(message=f"{why}: marked Crashed by promptdag; run the spec again to "
                        "resume it (its finished tasks are reused)"),
                force=True,
            )
            run = await client.read_flow_run(run.id)
        seen.append(run)
    return seen
