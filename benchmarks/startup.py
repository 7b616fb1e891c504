"""Start-up: from invoking `promptdag run` to its first task starting, with and without a server.

What is measured: the wall clock is read just before the CLI process is spawned; the first task's
`started_at` in the result JSON is when the scheduler dispatched it (the same machine clock, so
the difference is honest to a millisecond or so). That span holds the interpreter's start,
imports, spec validation, connecting to (or starting) the Prefect API and creating the flow run.
The time to the process's exit is reported beside it.

"No server" is what a user gets out of the box: Prefect's ephemeral API, started by the CLI
process itself, with a `PREFECT_HOME` that has already been used once (its database exists);
the very first run on a fresh home is reported separately. "Local server" points
`PREFECT_API_URL` at the benchmark's already running `prefect server start`.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from benchmarks.server import LocalServer, quiet_env


def _write_spec(path: Path) -> Path:
    """A one-task spec under a new name, so no earlier run's result is reused."""
    spec = {
        "name": f"startup probe #{uuid.uuid4().hex[:10]}",
        "tasks": [{"name": "first", "prompt": "Say hello", "depends_on": []}],
    }
    path.write_text(json.dumps(spec))
    return path


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("promptdag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "promptdag.cli"]


def invoke(command: str, spec: Path, env: dict[str, str]) -> tuple[float, float | None]:
    """Run `promptdag COMMAND SPEC` once: (seconds to exit, to the first task's start or None)."""
    args = [command, str(_write_spec(spec))] + (["--json"] if command == "run" else [])
    invoked = time.time()
    done = subprocess.run(_cli() + args, env=env, capture_output=True, text=True, timeout=300)
    exited = time.time() - invoked
    if done.returncode != 0:
        raise RuntimeError(f"promptdag {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    if "--json" not in args:
        return exited, None
    result = json.loads(done.stdout)
    first = min(datetime.fromisoformat(t["started_at"]).timestamp() for t in result["tasks"])
    return exited, first - invoked


def measure(
    server: LocalServer, repeats: int, ephemeral_runs: int
) -> dict[str, dict[str, float | None]]:
    """Median seconds to first task and to exit, per mode (see module docstring).

    `ephemeral_runs`: 0 skips the ephemeral API (the smoke test), 1 runs it once on a fresh
    home, more adds `repeats` runs on the then-used home."""
    workdir = Path(tempfile.mkdtemp(prefix="promptdag-startup-"))
    spec = workdir / "startup.json"
    ephemeral = quiet_env(str(workdir / "ephemeral-home"))
    ephemeral["PROMPTDAG_AUTO_SERVER"] = "false"  # Prefect's ephemeral API, no background server
    served = quiet_env(str(workdir / "client-home"))
    served["PREFECT_API_URL"] = server.url

    rows: dict[str, dict[str, float | None]] = {}
    if ephemeral_runs:
        print("startup: no server, fresh home ...", file=sys.stderr, flush=True)
        server.wait_idle()
        exit_s, first_s = invoke("run", spec, ephemeral)  # creates the home's database
        rows["no server, first run on a fresh PREFECT_HOME"] = {
            "first_task": round(first_s or 0.0, 3),
            "exit": round(exit_s, 3),
        }
    modes = {
        "promptdag validate (no Prefect)": ("validate", served),
        "no server (ephemeral API)": ("run", ephemeral),
        "local server running": ("run", served),
    }
    if ephemeral_runs < 2:
        del modes["no server (ephemeral API)"]
    samples: dict[str, list[tuple[float, float | None]]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode, (command, env) in modes.items():
            print(f"startup: {mode} ...", file=sys.stderr, flush=True)
            server.wait_idle()
            samples[mode].append(invoke(command, spec, env))
    for mode, runs in samples.items():
        firsts = [f for _, f in runs if f is not None]
        rows[mode] = {
            "first_task": round(statistics.median(firsts), 3) if firsts else None,
            "exit": round(statistics.median(e for e, _ in runs), 3),
        }
    shutil.rmtree(workdir, ignore_errors=True)
    return rows
