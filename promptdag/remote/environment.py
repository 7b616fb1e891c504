"""The environment a run needs (a reachable Prefect API, a writable PREFECT_HOME), checked
before Prefect starts, and the environment failures that still happen later, told apart from
bugs: each is one line saying what to do, exit 2, like bad input. Exit 3 stays for real bugs.

Runs before Prefect is imported, so it reads PREFECT_API_URL and PREFECT_HOME from the
environment as Prefect will (a profile's values are not seen here; Prefect then reports them
itself, and `environment_problem` maps what it raises).
"""

from __future__ import annotations

import errno
import os
import urllib.error
import urllib.request
from pathlib import Path

from promptdag.errors import ConfigError

API_CHECK_TIMEOUT_S = 5.0
_WRITE_ERRNOS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a path component is not a directory",
    errno.EFBIG: "file too large (a file-size limit is set)",
}
_START_A_SERVER = ("start it (promptdag server start, or prefect server start), fix the URL, "
                   "or unset PREFECT_API_URL to run on a temporary local API")


def prefect_home() -> Path:
    """PREFECT_HOME as the environment sets it, or Prefect's default."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def check_environment() -> None:
    """Raise ConfigError (one line, exit 2) when a run cannot start here: PREFECT_API_URL set
    but not answering, or (for Prefect's temporary local API, which keeps its database in
    PREFECT_HOME) a PREFECT_HOME that cannot be written."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        check_api_url(url)
    else:
        check_writable(prefect_home(), "PREFECT_HOME")


def check_api_url(url: str, timeout: float = API_CHECK_TIMEOUT_S) -> None:
    """A quick `GET {url}/health`: any HTTP answer will do (a 401 from a server that wants a
    key is still a server); no answer at all is a ConfigError naming the URL."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except ValueError:
        raise ConfigError(f"PREFECT_API_URL={url} is not a URL: give one like "
                          "http://127.0.0.1:4200/api, or unset it") from None
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {timeout:g} s"
        raise ConfigError(f"the Prefect API at PREFECT_API_URL={url} is not answering "
                          f"({_reason(reason)}): {_START_A_SERVER}") from None


def check_writable(directory: Path, name: str) -> None:
    """Create `directory` if needed and write a small file in it; ConfigError if that fails."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".promptdag-write-check-{os.getpid()}"
        try:
            with probe.open("wb") as handle:
                handle.write(b"\0" * 65_536)  # a full disk fails here, not at the create
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"{name} {directory} cannot be written ({_reason(exc)}): "
                          f"{_fix_home(name)}") from None


def _fix_home(name: str) -> str:
    return (f"free some space or fix its permissions, or point {name} at a writable directory "
            f"(export {name}=/path/with/space)")


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return _WRITE_ERRNOS[exc.errno]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def environment_problem(exc: BaseException) -> str | None:
    """One line saying what to fix when `exc` (or what caused it) is the environment's doing:
    the Prefect API unreachable or not starting, a read-only or full disk, missing permissions.
    None for anything else (a bug: exit 3)."""
    url = os.environ.get("PREFECT_API_URL")
    for error in _chain(exc):
        text = str(error)
        kind = f"{type(error).__module__}.{type(error).__name__}"
        if "Failed to reach API" in text or kind in (
            "httpx.ConnectError", "httpx.ConnectTimeout", "httpcore.ConnectError"
        ):
            where = f"PREFECT_API_URL={url}" if url else "Prefect's local API"
            return f"the Prefect API ({where}) cannot be reached: {_START_A_SERVER}"
        if "ephemeral Prefect API server" in text:
            return (f"Prefect's temporary local API server did not start: check that "
                    f"PREFECT_HOME ({prefect_home()}) is writable with free space and that "
                    "Prefect's database settings (PREFECT_API_DATABASE_CONNECTION_URL) point "
                    "somewhere usable; or start a server (promptdag server start) and set "
                    "PREFECT_API_URL")
        if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
            where = f" {error.filename}" if error.filename else ""
            return (f"cannot write{where} ({_reason(error)}): free some space or fix the "
                    "permissions there, or point PREFECT_HOME (and PREFECT_LOCAL_STORAGE_PATH, "
                    "where results go) at a writable directory")
        lowered = text.lower()
        if "operationalerror" in kind.lower() and any(
            s in lowered for s in ("readonly database", "disk is full", "unable to open database")
        ):
            return (f"Prefect's database cannot be written ({text.splitlines()[0][:120]}): "
                    f"{_fix_home('PREFECT_HOME')}")
    return None
