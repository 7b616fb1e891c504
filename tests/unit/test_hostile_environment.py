"""Issue 17's table, row by row: each hostile input or environment ends in bounded time and
memory with one clear line on stderr and exit 2. The CLI runs as a child process; its peak RSS
is measured (VmHWM at its exit: its own, since its exec) and must stay under
RSS_LIMIT_MB. None of these starts Prefect: they are refused before it would.

(The garbled-provider-body row is tested with the providers, tests/providers/.)
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promptdag.remote.environment import environment_problem

RSS_LIMIT_MB = 100  # the CLI's own start-up is ~40 MB; a bomb once grew to 14.8 GB
# No wall-clock bound (a busy machine breaks one): a hang is caught by the child's timeout
# (`promptdag(timeout=...)`), memory by its own peak RSS.


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    def one_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


# Runs the CLI as `python -m promptdag.cli.main` does, then records the process's own peak RSS
# (VmHWM: since its exec) at exit. wait4()'s ru_maxrss would also count the memory of the
# pytest process it was forked from (~90 MB here), hiding what the CLI itself used.
LAUNCH = """
import atexit, os, runpy, sys
def record():
    with open('/proc/self/status') as status, open(os.environ['PEAK_RSS_FILE'], 'w') as out:
        out.write(next(l for l in status if l.startswith('VmHWM')).split()[1])
atexit.register(record)
sys.argv = ['promptdag', *sys.argv[1:]]
runpy.run_module('promptdag.cli', run_name='__main__', alter_sys=True)
"""


def promptdag(*args: str, env: dict[str, str | None] | None = None,
              timeout: float = 180) -> Outcome:
    """The CLI in a child process; its exit code, output, wall time and peak RSS. `env`
    overrides the environment (None removes a variable)."""
    child_env = {**os.environ}
    child_env.pop("PROMPTDAG_DEBUG", None)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        child_env["PEAK_RSS_FILE"] = peak.name
        child = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], stdout=out,
                                 stderr=err, stdin=subprocess.DEVNULL, env=child_env)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                child.kill()
                os.wait4(child.pid, 0)
                pytest.fail(f"promptdag {' '.join(args)} still running after {timeout} s")
            time.sleep(0.02)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        recorded = peak.read().strip()
    # VmHWM in KiB; should the child die before recording it, the (larger) rusage figure
    peak_kib = int(recorded) if recorded else usage.ru_maxrss
    return Outcome(child.returncode, stdout, stderr, seconds, peak_kib / 1024)


def assert_bounded_exit_2(outcome: Outcome, *expected: str) -> str:
    line = outcome.one_line()
    assert outcome.code == 2, outcome.stderr
    assert outcome.stdout == ""
    assert outcome.peak_rss_mb < RSS_LIMIT_MB, f"peak RSS {outcome.peak_rss_mb:.0f} MB"
    for text in expected:
        assert text in line, line
    print(f"\n{outcome.seconds:.2f} s, peak RSS {outcome.peak_rss_mb:.0f} MB: {line}")
    return line


def alias_bomb(where: str) -> str:
    """Nine levels of ten aliases each: 10^9 values once expanded, in a 1 KB file."""
    lines = ["name: bomb", "tasks:", "  - name: t", "    prompt: p", f"    {where}:",
             "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("where", ["context", "model_options"])
def test_a_yaml_alias_bomb_is_refused_while_reading(tmp_path: Path, command: str, where: str):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(alias_bomb(where))
    assert spec.stat().st_size < 2_000
    assert_bounded_exit_2(promptdag(command, str(spec)), "PROMPTDAG_MAX_SPEC_VALUES",
                          "YAML aliases expanded")


@pytest.mark.parametrize("command", ["validate", "run", "graph"])
def test_a_fifo_as_the_spec_is_refused_at_once(tmp_path: Path, command: str):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)  # nobody ever writes to it: reading it would wait for ever
    assert_bounded_exit_2(promptdag(command, str(fifo), timeout=120), "named pipe (FIFO)")


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_as_the_spec_is_refused_without_reading_it(path: str):
    if not Path(path).exists():
        pytest.skip(f"no {path} here")
    assert_bounded_exit_2(promptdag("run", path), "character device")


def test_a_directory_or_a_socket_as_the_spec_is_refused(tmp_path: Path):
    assert_bounded_exit_2(promptdag("validate", str(tmp_path)), "is a directory")
    with socket.socket(socket.AF_UNIX) as server:
        path = tmp_path / "s.yaml"
        server.bind(str(path))
        assert_bounded_exit_2(promptdag("validate", str(path)), "socket")


def nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return {"name": "deep", "tasks": [{"name": "t", "prompt": "p", "context": {"c": value}}]}


@pytest.mark.parametrize("command", ["validate", "run"])
def test_json_nested_900_deep_is_the_same_clear_error_for_validate_and_run(
    tmp_path: Path, command: str
):
    spec = tmp_path / "deep.json"
    spec.write_text(json.dumps(nested(900)))
    assert_bounded_exit_2(promptdag(command, str(spec)), "nested more than 100 deep",
                          "PROMPTDAG_MAX_SPEC_DEPTH")


def test_a_50_mb_prompt_is_refused_before_it_is_read(tmp_path: Path):
    spec = tmp_path / "huge.json"
    with spec.open("w") as out:
        out.write('{"name": "huge", "tasks": [{"name": "t", "prompt": "')
        chunk = "x" * 1_000_000
        for _ in range(50):
            out.write(chunk)
        out.write('"}]}')
    assert_bounded_exit_2(promptdag("run", str(spec)), "PROMPTDAG_MAX_SPEC_BYTES")


def test_a_prompt_over_its_limit_is_refused_by_validate_and_run_alike(tmp_path: Path):
    spec = tmp_path / "long.json"
    spec.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "prompt": "x" * 2_000}]}))
    env: dict[str, str | None] = {"PROMPTDAG_MAX_PROMPT_CHARS": "1000"}
    lines = {assert_bounded_exit_2(promptdag(command, str(spec), env=env), "task 't'",
                                   "PROMPTDAG_MAX_PROMPT_CHARS")
             for command in ("validate", "run")}
    assert len(lines) == 1  # the same line from both


def test_a_context_file_gets_the_same_bounds(tmp_path: Path):
    bomb = tmp_path / "context.yaml"
    bomb.write_text("\n".join(alias_bomb("context").splitlines()[5:]).replace("      ", ""))
    assert_bounded_exit_2(promptdag("objective", "x", "--context-file", str(bomb)),
                          "PROMPTDAG_MAX_SPEC_VALUES")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert_bounded_exit_2(promptdag("objective", "x", "--context-file", str(fifo)), "FIFO")
    assert_bounded_exit_2(promptdag("submit", "--objective", "x", "--context-file", str(fifo)),
                          "FIFO")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"text": "y" * 3_000}))
    assert_bounded_exit_2(promptdag("objective", "x", "--context-file", str(big),
                                    env={"PROMPTDAG_MAX_CONTEXT_BYTES": "1000"}),
                          "PROMPTDAG_MAX_CONTEXT_BYTES")
    request = tmp_path / "request.yaml"
    request.write_text(alias_bomb("context").replace("name: bomb\ntasks:", "objective: o\nx:"))
    assert_bounded_exit_2(promptdag("objective", "--request", str(request)),
                          "PROMPTDAG_MAX_SPEC_VALUES")


def test_control_characters_in_names_are_escaped_on_the_terminal(tmp_path: Path):
    spec = tmp_path / "names.json"
    spec.write_text(json.dumps({"name": "w\x1b[2J\x07", "tasks": [
        {"name": "Clear\x1b[2J\x1b]0;pwned\x07", "prompt": "x"},
        {"name": "abc\u202edef", "prompt": "y", "depends_on": ["nope\x1b[31m"]},
    ]}))
    done = promptdag("validate", str(spec))  # an unknown dependency: the error line
    line = assert_bounded_exit_2(done)
    assert "\\x1b[31m" in line and "\x1b" not in done.stderr
    spec.write_text(spec.read_text().replace(', "depends_on": ["nope\\u001b[31m"]', ""))
    done = promptdag("validate", str(spec))
    assert done.code == 0, done.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in done.stdout
    assert "Clear\\x1b[2J\\x1b]0;pwned\\x07" in done.stdout and "abc\\u202edef" in done.stdout
    done = promptdag("graph", str(spec))
    assert done.code == 0 and "\x1b" not in done.stdout and "\u202e" not in done.stdout


def test_a_prefect_api_url_pointing_at_nothing_is_exit_2_with_what_to_do(tmp_path: Path):
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "prompt": "p"}]}))
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    for args in (("run", str(spec)), ("objective", "x"), ("submit", str(spec))):
        line = assert_bounded_exit_2(promptdag(*args, env={"PREFECT_API_URL": url}),
                                     f"PREFECT_API_URL={url}", "not answering",
                                     "promptdag server start")
        assert "internal error" not in line


def tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_filesystems(tmp_path: Path):
    """A read-only and a full filesystem (tmpfs mounts: needs root, else skipped)."""
    read_only, full = tmp_path / "ro", tmp_path / "full"
    if os.geteuid() != 0 or not tmpfs(read_only, "ro,size=1m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        assert tmpfs(full, "size=256k")
        with (full / "filler").open("wb") as filler:
            try:
                filler.write(b"\0" * 1_000_000)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        yield read_only, full
    finally:
        for mount in (read_only, full):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_read_only_or_full_prefect_home_is_exit_2_with_what_to_do(
    tmp_path: Path, small_filesystems: tuple[Path, Path]
):
    read_only, full = small_filesystems
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "prompt": "p"}]}))
    env: dict[str, str | None] = {"PREFECT_API_URL": None}  # the temporary local API
    for home, reason in ((read_only / "home", "read-only file system"),
                         (full, "no space left"),
                         (spec / "home", "not a directory")):
        assert_bounded_exit_2(promptdag("run", str(spec), env={**env, "PREFECT_HOME": str(home)}),
                              f"PREFECT_HOME {home} cannot be written", reason,
                              "export PREFECT_HOME=")
    # `server start` writes its log and state there: Prefect warns on import, then one line
    done = promptdag("server", "start", "--port", "9", env={
        **env, "PREFECT_HOME": str(read_only / "home")})
    assert done.code == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("promptdag: error: cannot write") and "read-only file system" in last


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("Cannot create flow run. Failed to reach API at http://x/api/."),
     "cannot be reached"),
    (RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server."),
     "temporary local API server did not start"),
    (OSError(errno.EROFS, "Read-only file system", "/h/prefect.db"), "read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left"),
    (PermissionError(errno.EACCES, "Permission denied", "/h/storage"), "permission denied"),
])
def test_environment_failures_after_prefect_starts_are_told_apart_from_bugs(
    error: BaseException, expected: str
):
    wrapped = RuntimeError("while starting the run")
    wrapped.__cause__ = error
    for exc in (error, wrapped):
        problem = environment_problem(exc)
        assert problem is not None and expected in problem and "\n" not in problem


@pytest.mark.parametrize("bug", [ValueError("x"), KeyError("k"), RuntimeError("boom"),
                                 OSError(errno.EBADF, "Bad file descriptor")])
def test_real_bugs_stay_internal_errors(bug: BaseException):
    assert environment_problem(bug) is None


def test_a_server_that_will_not_start_is_exit_2_with_what_to_do(tmp_path: Path):
    """Prefect's temporary API cannot open its database: Prefect gives up after its start-up
    timeout (3 s here), and that is the environment's doing, not a bug."""
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "prompt": "p"}]}))
    done = promptdag("run", str(spec), env={
        "PREFECT_API_URL": None,
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:////proc/nope/prefect.db",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "3",
    }, timeout=120)
    assert done.code == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after the "Running ..." banner
    assert "temporary local API server did not start" in last
    assert "PREFECT_API_DATABASE_CONNECTION_URL" in last and "promptdag server start" in last
    assert done.peak_rss_mb < 400  # Prefect itself is loaded here
    print(f"\n{done.seconds:.1f} s, peak RSS {done.peak_rss_mb:.0f} MB: {last}")


def test_the_largest_yaml_the_limits_accept_is_read_in_bounded_memory(tmp_path: Path):
    """Just under PROMPTDAG_MAX_SPEC_VALUES: the worst case of what is accepted (one value
    per two bytes) still reads in bounded time and memory; one past it is refused."""
    spec = tmp_path / "many.yaml"
    values = 249_900
    spec.write_text("name: w\ntasks: [{name: t, prompt: p, context: {x: ["
                    + "1," * values + "1]}}]\n")
    done = promptdag("validate", str(spec))
    assert done.code == 0, done.stderr
    assert done.peak_rss_mb < 400, done
    print(f"\naccepted: {done.seconds:.2f} s, peak RSS {done.peak_rss_mb:.0f} MB")
    spec.write_text(spec.read_text().replace("[1,", "[" + "1," * 200, 1))
    assert_bounded_exit_2(promptdag("validate", str(spec)), "PROMPTDAG_MAX_SPEC_VALUES")


def test_a_prefect_home_without_permission_is_exit_2_with_what_to_do(tmp_path: Path):
    """No permission to write PREFECT_HOME: mode 555 for a normal user; as root (which file
    modes do not stop) an immutable directory (chattr +i)."""
    home = tmp_path / "home"
    home.mkdir()
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "prompt": "p"}]}))
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(home)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        undo = ["chattr", "-i", str(home)]
        reason = "operation not permitted"
    else:
        home.chmod(0o555)
        undo = ["chmod", "755", str(home)]
        reason = "permission denied"
    try:
        assert_bounded_exit_2(promptdag("run", str(spec), env={
            "PREFECT_API_URL": None, "PREFECT_HOME": str(home)}),
            f"PREFECT_HOME {home} cannot be written", reason, "export PREFECT_HOME=")
    finally:
        subprocess.run(undo, capture_output=True)


class _NotPrefect(BaseHTTPRequestHandler):
    """Any other web server: a page at / and 404 for the rest."""

    def do_GET(self) -> None:
        body = b"<html><body>hello</body></html>"
        self.send_response(200 if self.path in ("/", "/health") else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_prefect_api_url_that_is_another_web_server_is_exit_2_naming_it(tmp_path: Path):
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "prompt": "p"}]}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotPrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for url, answered in ((f"{base}/api", "HTTP 404"), (base, "<html><body>hello")):
            line = assert_bounded_exit_2(promptdag("run", str(spec), env={"PREFECT_API_URL": url}),
                                         f"PREFECT_API_URL={url} is not a Prefect API", answered,
                                         "unset it")
            assert "internal error" not in line
    finally:
        server.shutdown()
        server.server_close()
