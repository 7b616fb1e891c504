"""Headless Chromium driven over the DevTools protocol: open a page, read its text, click, shoot.

Just enough to check what the Prefect UI renders (it is a single-page app: the text appears
after its API calls return, so reads poll). Chromium starts with the flags of a closed network
and in its own process group, which `close` kills.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from promptdag.remote.local_server import kill_process_group

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    def __init__(self, executable: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="promptdag-chromium-"))
        self.process = subprocess.Popen(
            [executable, *FLAGS, "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._id = 0
        self.ws = self._connect()
        self.call("Page.enable")

    def _connect(self) -> ClientConnection:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 120  # a wait: chromium starts slowly on a busy machine
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t["type"] == "page")
        return connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # skip the events Page.enable subscribes to
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return answer.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def wait_for_text(self, *needles: str, timeout: float = 120) -> str:
        """The page's text once every needle is in it (AssertionError with the text if not).
        A wait, not a measure: the UI renders late on a busy machine, and shows task runs
        once the server has recorded them from their events."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(needle in text for needle in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise AssertionError(f"not on the page after {timeout} s: {missing}\n{text}")
            time.sleep(0.25)

    def click_text(self, label: str) -> None:
        """Click the innermost element whose whole text is `label`."""
        found = self.evaluate(
            "(() => { const el = [...document.querySelectorAll('body *')].find(e => "
            f"e.children.length === 0 && e.textContent.trim() === {json.dumps(label)}); "
            "if (!el) return false; el.click(); return true; })()"
        )
        if not found:
            raise AssertionError(f"nothing to click labelled {label!r}:\n{self.text()}")

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            kill_process_group(self.process.pid, grace=3)
            self.process.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)
