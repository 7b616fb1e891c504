"""A busy Prefect server is not a dead one: a command whose server answers its health check
only after 8 s (past the first 5 s check) says it is waiting, waits, and succeeds. The server
is this directory's real one, behind a loopback proxy that holds each `/api/health` for 8 s
and passes every other request through."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.deployments.conftest import Server

pytestmark = pytest.mark.deployments

HEALTH_DELAY_S = 8.0


class SlowHealthProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.health_checks = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.path.rstrip("/").endswith("/health"):
                    proxy.health_checks += 1
                    time.sleep(HEALTH_DELAY_S)  # busy: the answer comes, late
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                with contextlib.suppress(OSError):  # the client gave up on this one
                    answer = httpx.request(self.command, proxy.upstream + self.path,
                                           headers=headers, content=body, timeout=60)
                    self.send_response(answer.status_code)
                    for key, value in answer.headers.items():
                        if key.lower() not in ("content-length", "transfer-encoding",
                                               "connection", "content-encoding"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def slow_health(prefect_server: Server) -> Iterator[SlowHealthProxy]:
    proxy = SlowHealthProxy(prefect_server.info.url)
    threading.Thread(target=proxy.http.serve_forever, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.http.shutdown()
        proxy.http.server_close()


def test_a_server_slow_to_answer_its_health_check_is_waited_for(
    prefect_server: Server, slow_health: SlowHealthProxy
):
    env = {**prefect_server.env, "PREFECT_API_URL": f"{slow_health.url}/api"}
    done = Server(prefect_server.info, env).promptdag("runs", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("[")  # the runs, listed through the proxy
    assert "has not answered its health check" in done.stderr
    assert "waiting up to 60 s" in done.stderr and "not answering" not in done.stderr
    assert slow_health.health_checks >= 2  # the first, given up after 5 s; the second, waited


def test_a_refused_connection_is_not_waited_for(prefect_server: Server):
    from promptdag.remote.local_server import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    done = Server(prefect_server.info, {**prefect_server.env, "PREFECT_API_URL": url}).promptdag(
        "runs")
    assert done.returncode == 2
    assert "connection refused" in done.stderr and "waiting" not in done.stderr
