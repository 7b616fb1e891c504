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
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from promptdag.errors import ConfigError

API_CHECK_TIMEOUT_S = 5.0  # then a busy server gets up to `api_patience_seconds` in all
_HEALTH_BYTES = 4096  # Prefect answers `true`; another server's page is not read whole
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
    """`GET {url}/health`, told apart three ways, before Prefect starts.

    - No server there (connection refused, no such host): a ConfigError at once.
    - A server that answers, but not as Prefect's API does (`true` with a 200; a 401 or 403
      from one that wants a key is taken as Prefect's, which reports the key itself): a
      ConfigError naming the URL and what it answered.
    - A slow answer: a busy server, not a dead one. After `timeout` seconds the wait is said
      on stderr, and the check waits up to the `api_patience_seconds` setting in all before
      it gives up (a refused connection meanwhile still ends it at once).
    """
    from promptdag.settings import get_settings

    patience = max(get_settings().api_patience_seconds, timeout)
    started = time.monotonic()
    attempt_timeout = timeout
    while True:
        outcome = _ask_health(url, attempt_timeout)
        if outcome is None:
            return
        waited = time.monotonic() - started
        if outcome != _SLOW or waited >= patience - 0.5:
            if outcome == _SLOW:
                outcome = f"no answer within {waited:.0f} s"
            raise ConfigError(outcome)
        if attempt_timeout == timeout:
            print(f"promptdag: the Prefect API at PREFECT_API_URL={url} has not answered its "
                  f"health check in {waited:.0f} s; a busy server answers late: waiting up to "
                  f"{patience:g} s in all (setting PROMPTDAG_API_PATIENCE_SECONDS)",
                  file=sys.stderr, flush=True)
        attempt_timeout = max(1.0, patience - waited)


_SLOW = "slow"


def _ask_health(url: str, timeout: float) -> str | None:
    """None when `url` is a Prefect API that answered; `_SLOW` when the answer did not come
    within `timeout`; else the one line that says what is wrong and what to do."""
    health = f"{url.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as answer:
            body = answer.read(_HEALTH_BYTES)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return None  # a server that wants a key: Prefect says which, with its own client
        if exc.code >= 500 or exc.code == 429:
            return (f"the Prefect API at PREFECT_API_URL={url} answers its health check with "
                    f"HTTP {exc.code}: see the server's log, or restart it")
        return _not_prefect(url, f"GET {health} gave HTTP {exc.code}")
    except ValueError:
        return (f"PREFECT_API_URL={url} is not a URL: give one like "
                "http://127.0.0.1:4200/api, or unset it")
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError) or (
            "timed out" in str(reason)
        ):
            return _SLOW
        return (f"the Prefect API at PREFECT_API_URL={url} is not answering "
                f"({_reason(reason)}): {_START_A_SERVER}")
    if body.strip() != b"true" and not _is_prefect_cloud(url):
        shown = " ".join(body[:60].decode(errors="replace").split()) or "an empty body"
        return _not_prefect(url, f"GET {health} answered {shown!r}, not Prefect's `true`")
    return None


def _is_prefect_cloud(url: str) -> bool:
    """Prefect Cloud's workspace URLs: its health answer is its own affair."""
    host = urllib.parse.urlsplit(url).hostname or ""
    return host == "prefect.cloud" or host.endswith(".prefect.cloud")


def _not_prefect(url: str, what: str) -> str:
    return (f"PREFECT_API_URL={url} is not a Prefect API ({what}): point it at a Prefect "
            "server's API, which ends in /api (e.g. http://127.0.0.1:4200/api), or unset it "
            "to run on a local one")


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
