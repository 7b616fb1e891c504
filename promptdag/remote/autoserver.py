"""Fast by default: a local Prefect server started in the background on first use, then reused.

Without a server, every `promptdag run` starts Prefect's temporary API and stops it again
(8-25 s here before the first task), and its runs appear in no UI. Build tools solve the same
problem with a daemon started on first use (Gradle, Bazel); this is that daemon: the first run
with no `PREFECT_API_URL` starts `promptdag server start`'s server (local_server.py) in
PREFECT_HOME, says so once (its UI, how to stop it, how to opt out), and every later run finds
it there and takes about 2 s end to end.

Rules:
- a `PREFECT_API_URL` the user set always wins (nothing is started or used here): in the
  environment, in the active Prefect profile, or in the settings files Prefect reads from the
  working directory (`.env`, `prefect.toml`, `pyproject.toml`'s `[tool.prefect]`);
- `PROMPTDAG_AUTO_SERVER=false` turns the start off (a server already running is still used,
  as before); the test suite sets it for the whole session;
- the server gets port 4200 (`PROMPTDAG_SERVER_PORT`) when it is free, else any free port;
  two processes starting at once agree through a lock file, so one server is started;
- a server that cannot be started is one line, and the run goes on on the temporary API.

Every entry point reaches Prefect through `connect` (the CLI, before Prefect is imported) or
`reach_prefect` (the Python API and the client, which may run after Prefect was imported), so
two processes never open one SQLite database as two servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from promptdag.errors import ConfigError
from promptdag.remote.local_server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ServerInfo,
    _port_free,
    free_port,
    healthy,
    start_server,
    verified_state,
)
from promptdag.settings import get_settings

LOCK_FILE = "promptdag-server.lock"
STARTING_WAIT_S = 180.0  # a server starting (here or in another CLI): a bound, not a delay
_could_not_start: set[Path] = set()  # homes where a start failed: said once, not tried again


def running_server(home: Path) -> ServerInfo | None:
    """The server recorded in `home` if it is alive and answers. Its process is known to be
    that server, so a slow answer is a busy server: it gets the API's patience, not a
    fraction of a second (a refused connection still fails at once)."""
    info = verified_state(home)
    if info is None or not healthy(info.api_url, get_settings().api_patience_seconds):
        return None
    return info


def local_server(home: Path, start: bool, say: Callable[[str], None]) -> ServerInfo | None:
    """The local server to run on: the one running in `home`, or (with `start` and the
    setting on) one started now and announced through `say`; None for the API the user
    configured, or Prefect's temporary API.
    """
    if configured_api_url(home) is not None:  # the user's server always wins
        return None
    if (info := running_server(home)) is not None:
        return info
    if not start or not get_settings().auto_server or home in _could_not_start:
        return None
    try:
        with _locked(home):
            if (info := running_server(home)) is not None:  # started meanwhile by another CLI
                return info
            info = start_server(DEFAULT_HOST, _port(), home=home, timeout=STARTING_WAIT_S)
    except ConfigError as exc:
        _could_not_start.add(home)
        say(f"promptdag: could not start a local Prefect server ({exc}); this run uses "
            "Prefect's temporary API (set PROMPTDAG_AUTO_SERVER=false to stop trying)")
        return None
    except OSError:  # PREFECT_HOME cannot be written: the environment check says so, once
        return None
    say(announcement(info))
    return info


def configured_api_url(home: Path) -> str | None:
    """PREFECT_API_URL as the user configured it, read without importing Prefect: the
    environment, then the working directory's `.env`, `prefect.toml` and `pyproject.toml`,
    then the active profile (PREFECT_PROFILE, else the profiles file's `active`)."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    cwd = Path.cwd()
    for line in _read(cwd / ".env").splitlines():
        key, _, value = line.partition("=")
        if key.strip().removeprefix("export ").strip() == "PREFECT_API_URL" and value.strip():
            return value.strip().strip("'\"")
    url = _toml(cwd / "prefect.toml").get("api", {}).get("url")
    url = url or _toml(cwd / "pyproject.toml").get("tool", {}).get("prefect", {}).get(
        "api", {}).get("url")
    if url:
        return str(url)
    profiles_file = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    profiles = _toml(profiles_file)
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    profile = profiles.get("profiles", {}).get(active, {})
    if active == "local" and "PREFECT_API_URL" not in profile:  # Prefect's default "local"
        return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/api"
    return str(profile["PREFECT_API_URL"]) if profile.get("PREFECT_API_URL") else None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def _toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; {} when missing or unreadable (Prefect reports bad files)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(_read(path))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def announcement(info: ServerInfo) -> str:
    """What the first run says about the server it started (once: later runs reuse it)."""
    return (f"Started a local Prefect server for your runs (later runs reuse it): "
            f"UI {info.url}\n"
            f"  stop it: promptdag server stop   never start one: "
            f"export PROMPTDAG_AUTO_SERVER=false   log: {info.log}")


def _port() -> int:
    port = get_settings().server_port
    return port if _port_free(DEFAULT_HOST, port) else free_port(DEFAULT_HOST)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold PREFECT_HOME's server lock (an flock, released if this process dies)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as handle:
        deadline = time.monotonic() + STARTING_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"another promptdag is still starting the server in "
                                      f"{home} after {STARTING_WAIT_S:g} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def use(info: ServerInfo) -> None:
    """Point this process (before Prefect is imported) and its children at `info`."""
    os.environ["PREFECT_API_URL"] = info.api_url


def connect(start: bool, say: Callable[[str], None]) -> str | None:
    """The API URL this process should use, by the rules above: PREFECT_API_URL when set, else
    the local server's (started now if `start`; `say` announces it), which this process and
    its children are then pointed at; None for Prefect's temporary API."""
    if url := os.environ.get("PREFECT_API_URL"):  # the user's server always wins
        return url
    from promptdag.remote.environment import prefect_home

    # Prefect may not be imported yet (its settings are fixed at import): PREFECT_HOME as set,
    # or Prefect's default home.
    info = local_server(prefect_home(), start, say)
    if info is None:
        # Prefect's temporary API: Prefect gives its server 20 s to start, which a new
        # database's migrations on a busy machine can overrun. A bound, not a delay; the
        # user's own setting wins.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                              f"{STARTING_WAIT_S:g}")
        return None
    use(info)
    return info.api_url


def reach_prefect(start: bool, say: Callable[[str], None]) -> contextlib.AbstractContextManager[
        object]:
    """`connect` for code that may run after Prefect was imported (the Python API, the client):
    a context in which Prefect's settings point at the server found. Nothing changes inside a
    flow run, or when Prefect's settings already name an API (a test harness, a profile)."""
    if "prefect.context" in sys.modules:
        from prefect.context import FlowRunContext
        from prefect.settings import get_current_settings

        if FlowRunContext.get() is not None or get_current_settings().api.url:
            return contextlib.nullcontext()
    url = connect(start, say)
    if url is None or "prefect.context" not in sys.modules:
        return contextlib.nullcontext()  # Prefect, imported later, reads the environment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: url})
