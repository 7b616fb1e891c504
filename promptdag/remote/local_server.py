"""A local Prefect server in the background: start it, wait until it answers, stop it.

Wraps Prefect's own `prefect server start` (foreground mode, in a new session) instead of its
`--background` mode, for two reasons: its output goes to a log file we can show when it fails
to start (Prefect pipes it to nobody), and it stops by process group, so uvicorn and the
server's services go with it. The state file in PREFECT_HOME lets `stop` and `status` find it
from any shell. `PREFECT_UI_API_URL` is set so the UI calls this server's API on any port.

The state file records what identifies the server, not just its pid (which the system reuses
once the server is gone): the process's start time and command line, its port and its health
answer. `stop` signals a process only when all of these still match; a file that names another
process (or none) is stale, and is removed with one line, never acted on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import BaseModel

from promptdag.engine.process_identity import ProcessIdentity, identity
from promptdag.errors import ConfigError

STATE_FILE = "promptdag-server.json"
LOG_FILE = "promptdag-server.log"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 4200
WORK_POOL = "promptdag-process"


class ServerInfo(BaseModel):
    """A server started by `start_server`; what `stop_server` needs to find it again."""

    pid: int
    host: str
    port: int
    home: str
    log: str
    process: ProcessIdentity | None = None  # None in files of older versions: never signalled
    health: str | None = None  # what GET /api/health answered when it started

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def prefect_home() -> Path:
    """PREFECT_HOME as Prefect resolves it (env, profile or ~/.prefect)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_env(host: str, port: int, home: Path | None = None) -> dict[str, str]:
    """Environment for the server process (and for clients that should use it)."""
    env = dict(os.environ)
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    env.update(
        PREFECT_UI_API_URL=f"http://{host}:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.pop("PREFECT_API_URL", None)  # the server must not call itself through another URL
    return env


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    return health_answer(api_url, timeout) is not None


def health_answer(api_url: str, timeout: float = 2.0) -> str | None:
    """The body of a 200 to `GET {api_url}/health` (a Prefect server says `true`); None when
    there is no such answer."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as answer:
            if answer.status != 200:
                return None
            return answer.read(200).decode(errors="replace").strip()
    except (OSError, urllib.error.URLError):
        return None


def start_server(
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    home: Path | None = None,
    timeout: float = 180.0,
    env: dict[str, str] | None = None,
) -> ServerInfo:
    """Start `prefect server start` in a new session and return once `/api/health` answers.

    `timeout` bounds a server that never answers; it returns as soon as one does, so it is
    generous: a new database's migrations on a busy machine can take a minute.

    `env` adds to the server's environment, e.g. `PREFECT_API_DATABASE_CONNECTION_URL` for a
    server on PostgreSQL (this process's own settings stay as they are).

    Raises:
        ConfigError: a server is already recorded for this PREFECT_HOME, the port is taken,
            or the server exited or stayed silent (the message ends with its log's last line).
    """
    home = (home or prefect_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    running = verified_state(home)
    if running is not None:
        raise ConfigError(
            f"a promptdag server is already running at {running.url} (pid {running.pid}); "
            "stop it with `promptdag server stop`"
        )
    port = port or free_port(host)
    if healthy(f"http://{host}:{port}/api", timeout=0.5) or not _port_free(host, port):
        raise ConfigError(f"port {port} on {host} is in use; choose another with --port")
    log = home / LOG_FILE
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host,
             "--port", str(port)],
            env={**server_env(host, port, home), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop kills uvicorn too
        )
    info = ServerInfo(pid=process.pid, host=host, port=port, home=str(home), log=str(log),
                      process=identity(process.pid))
    _write_state(home, info)
    deadline = time.monotonic() + timeout
    while (answer := health_answer(info.api_url, timeout=1.0)) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(info)
            why = "exited" if process.returncode is not None else f"did not answer in {timeout:g} s"
            raise ConfigError(f"the Prefect server {why}: {_last_line(log)} (log: {log})")
        time.sleep(0.25)
    info = info.model_copy(update={"health": answer})
    _write_state(home, info)
    return info


def _write_state(home: Path, info: ServerInfo) -> None:
    """Replace the state file in one step (a reader never sees half of it)."""
    part = home / f"{STATE_FILE}.{os.getpid()}.part"
    part.write_text(info.model_dump_json())
    part.replace(home / STATE_FILE)


def is_that_server(info: ServerInfo) -> bool:
    """Whether the process `info.pid` is the server `info` recorded: the same start time and
    command line (a reused pid has neither). A record without them (an older version's) is
    never taken for its server."""
    if info.process is None:
        return False
    now = identity(info.pid)
    return now is not None and now == info.process


def verified_state(home: Path | None = None) -> ServerInfo | None:
    """The server recorded in `home` when its process is still that server; a record that
    is not (the server was killed, its pid maybe reused since) is removed, and None."""
    home = home or prefect_home()
    info = read_state(home)
    if info is None:
        return None
    if is_that_server(info):
        return info
    remove_stale(home, info)
    return None


def remove_stale(home: Path, info: ServerInfo) -> None:
    """Delete a state file that names no running server (only if it still names `info`)."""
    recorded = read_state(home)
    if recorded is not None and (recorded.pid, recorded.port, recorded.process) == (
        info.pid, info.port, info.process
    ):
        (home / STATE_FILE).unlink(missing_ok=True)


def stale_line(home: Path, info: ServerInfo) -> str:
    """The one line that says a stale record was removed and nothing was signalled."""
    if info.process is None:
        return (f"removed a server record that does not say which process it is "
                f"({home / STATE_FILE}, written by an older promptdag; nothing was signalled): "
                f"if a server still answers at {info.url}, stop it yourself (pid {info.pid})")
    return (f"removed a stale server record ({home / STATE_FILE}: pid {info.pid} is no longer "
            f"the server started on port {info.port}; nothing was signalled)")


def stop_server(info: ServerInfo | None = None, grace: float = 10.0) -> bool:
    """Stop a server by process group: SIGTERM, then SIGKILL after `grace` seconds, only when
    its process is still that server (`is_that_server`); its state file goes either way.

    Returns whether a running server was found and stopped.
    """
    home = Path(info.home) if info else prefect_home()
    info = info or read_state(home)
    if info is None:
        return False
    found = is_that_server(info) and kill_process_group(info.pid, grace)
    remove_stale(home, info)
    return found


def kill_process_group(pid: int, grace: float = 10.0) -> bool:
    """SIGTERM the group led by `pid`, SIGKILL what is left after `grace` s; False if gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while _group_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    return True


def read_state(home: Path | None = None) -> ServerInfo | None:
    file = (home or prefect_home()) / STATE_FILE
    try:
        return ServerInfo.model_validate_json(file.read_text())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited
            return False
    return True


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "no output"


def ensure_work_pool(name: str = WORK_POOL, pool_type: str = "process") -> bool:
    """Create the work pool prefect.yaml deploys to, if missing; True when it was created.

    Uses the API that PREFECT_API_URL points at.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async def create() -> bool:
        async with get_client() as client:
            try:
                await client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            except ObjectAlreadyExists:
                return False
            return True

    return asyncio.run(create())
