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
from datetime import datetime
from pathlib import Path

from benchmarks.server import LocalServer, quiet_env

SPEC = {
    "name": "startup probe",
    "tasks": [{"name": "first", "prompt": "Say hello", "depends_on": []}],
}


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("promptdag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "promptdag.cli"]


def invoke(args: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    """Run the CLI once: (seconds to exit, seconds to the first task's start or None)."""
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
    server: LocalServer, repeats: int, ephemeral_repeats: bool = True
) -> dict[str, dict[str, float | None]]:
    """Median seconds to first task and to exit, per mode (keys: see module docstring).

    `ephemeral_repeats=False` (the smoke test) keeps only the fresh-home run of the ephemeral
    API, its slowest and least repeatable mode."""
    workdir = Path(tempfile.mkdtemp(prefix="promptdag-startup-"))
    spec = workdir / "startup.json"
    spec.write_text(json.dumps(SPEC))
    run_args = ["run", str(spec), "--json"]

    ephemeral = quiet_env(str(workdir / "ephemeral-home"))
    served = quiet_env(str(workdir / "client-home"))
    served["PREFECT_API_URL"] = server.url

    rows: dict[str, dict[str, float | None]] = {}
    print("startup: fresh home ...", file=sys.stderr, flush=True)
    server.wait_idle()
    exit_s, first_s = invoke(run_args, ephemeral)  # also creates the ephemeral home's database
    rows["no server, first run on a fresh PREFECT_HOME"] = {"first_task": first_s, "exit": exit_s}

    modes = {
        "promptdag validate (no Prefect)": (["validate", str(spec)], served),
        "no server (ephemeral API)": (run_args, ephemeral),
        "local server running": (run_args, served),
    }
    if not ephemeral_repeats:
        del modes["no server (ephemeral API)"]
    samples: dict[str, list[tuple[float, float | None]]] = {mode: [] for mode in modes}
    for _ in range(repeats):
        for mode, (args, env) in modes.items():
            print(f"startup: {mode} ...", file=sys.stderr, flush=True)
            server.wait_idle()
            samples[mode].append(invoke(args, env))
    for mode, runs in samples.items():
        firsts = [f for _, f in runs if f is not None]
        rows[mode] = {
            "first_task": round(statistics.median(firsts), 3) if firsts else None,
            "exit": round(statistics.median(e for e, _ in runs), 3),
        }
    shutil.rmtree(workdir, ignore_errors=True)
    return rows
