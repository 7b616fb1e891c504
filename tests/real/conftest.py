"""A real model on a real server: llama.cpp's `llama-server` with SmolLM2-135M, started once per
test session from `shared/llm/` (next to the repository; `PROMPTDAG_TEST_LLM_DIR` overrides).

Tests ask for the `llama_server` fixture:

    async def test_something(llama_server):
        model = get_model("openai:smollm2", llama_server.options(max_tokens=16))
        # or: llama_server.base_url ("http://127.0.0.1:PORT/v1"), llama_server.port,
        # llama_server.props() (GET /props), llama_server.stop() / .start() (same port)

It serves the model alias `smollm2` with 4 slots of 2048 tokens each, at about 60 output tokens a
second: keep `max_tokens` small. It speaks OpenAI (`/v1/chat/completions`) and Anthropic
(`/v1/messages`, at `llama_server.root`). When the directory or the binary is missing, the tests
that use it are skipped with the reason.

`llama_cpp_python_server` is the second server, llama-cpp-python's (same model, one request at a
time, 4,096 tokens, `response_format` `json_object` only, no `/props`); its first start on a
machine builds a venv from the wheel beside it (15-60 s, needs the package index), reused later.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "llm"


def llm_dir() -> Path:
    return Path(os.environ.get("PROMPTDAG_TEST_LLM_DIR") or DEFAULT_DIR)


class LlamaServer:
    """One llama-server process on a fixed port, which tests may stop and start again."""

    model = "openai:smollm2"

    def __init__(self, directory: Path, port: int, run_dir: Path) -> None:
        self.directory = directory
        self.port = port
        self.run_dir = run_dir  # start.sh writes its PID file and log here
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/v1"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"llama-server-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"llama-server-{self.port}.log"

    def options(self, **extra: Any) -> dict[str, Any]:
        """Model options that point `openai:smollm2` at this server."""
        return {"base_url": self.base_url, **extra}

    def start(self) -> None:
        """Start it (start.sh returns once /health answers, within 30 s)."""
        done = subprocess.run(
            [str(self.directory / "start.sh"), str(self.port)],
            env={**os.environ, "TMPDIR": str(self.run_dir)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"llama-server did not start: {done.stderr.strip()}\n{log}")

    def stop(self) -> None:
        """Kill it and wait until its port refuses connections."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.listening():
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def listening(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def props(self) -> dict[str, Any]:
        """`GET /props`: `default_generation_settings.n_ctx` is one slot's context."""
        with urllib.request.urlopen(f"{self.root}/props", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]


class LlamaCppPythonServer(LlamaServer):
    """llama-cpp-python's OpenAI-compatible server (start-python-server.sh)."""

    script = "start-python-server.sh"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"llama-cpp-python-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"llama-cpp-python-{self.port}.log"

    def start(self) -> None:
        """Start it (the script returns once it answers; the first start builds its venv)."""
        env = {**os.environ, "TMPDIR": str(self.run_dir)}
        # the venv outlives the session (built once per machine), as the script's default does
        env.setdefault("PROMPTDAG_TEST_LLM_VENV",
                       str(Path(tempfile.gettempdir()) / "promptdag-llama-cpp-python"))
        done = subprocess.run([str(self.directory / self.script), str(self.port)], env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"llama-cpp-python did not start: {done.stderr.strip()}\n{log}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The session's real server (started at first use, killed at the end)."""
    directory = llm_dir()
    missing = [n for n in ("start.sh", "llama-server") if not (directory / n).exists()]
    if missing:
        pytest.skip(
            f"no real model server: {', '.join(missing)} missing in {directory} "
            "(set PROMPTDAG_TEST_LLM_DIR to the directory holding llama-server and start.sh)"
        )
    server = LlamaServer(directory, free_port(), tmp_path_factory.mktemp("llama-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama_cpp_python_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LlamaCppPythonServer]:
    """llama-cpp-python's server for the session (started at first use, killed at the end);
    skipped with the reason when its wheel or script is missing or it cannot be installed."""
    directory = llm_dir()
    wheels = list(directory.glob("llama_cpp_python-*.whl"))
    if not (directory / LlamaCppPythonServer.script).exists() or not wheels:
        pytest.skip(f"no llama-cpp-python server: {LlamaCppPythonServer.script} or its wheel "
                    f"missing in {directory} (set PROMPTDAG_TEST_LLM_DIR)")
    server = LlamaCppPythonServer(directory, free_port(),
                                  tmp_path_factory.mktemp("llama-cpp-python"))
    try:
        server.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        server.stop()
        pytest.skip(f"llama-cpp-python's server could not start: {str(exc)[:300]}")
    try:
        yield server
    finally:
        server.stop()
