"""The README example in the default set-up, as a new user meets it.

    python -m benchmarks.default_setup [--runs 5]

A fresh PREFECT_HOME, no PREFECT_API_URL, no setting changed: the first `promptdag run
examples/seed_api_request.json` starts the local Prefect server in the background
(promptdag/remote/autoserver.py), later runs reuse it. Reported: the first run end to end (server
start included); then, for runs 2..N, end to end (CLI spawned to exit, the README command as
written, output to a pipe) and, from the same runs with `--json`, the time to the first task
(the wall clock read just before spawning, against the first task's `started_at` in the
result: the same machine clock). Median and range, beside the floor of any Prefect command:
`python -c "import prefect"`. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/seed_api_request.json"


def invoke(env: dict[str, str], *extra: str) -> tuple[float, float | None]:
    """One run: (seconds to exit, seconds to the first task's start when --json)."""
    script = Path(sys.executable).with_name("promptdag")
    command = [str(script) if script.exists() else sys.executable, "run", EXAMPLE, *extra]
    if not script.exists():
        command[1:1] = ["-m", "promptdag.cli"]
    invoked = time.time()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    took = time.time() - invoked
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-500:])
    if "--json" not in extra:
        return took, None
    tasks = json.loads(done.stdout)["tasks"]
    first = min(datetime.fromisoformat(t["started_at"]).timestamp() for t in tasks)
    return took, first - invoked


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f} s (min {min(values):.2f}, "
            f"max {max(values):.2f}, n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs after the first (default 5)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="promptdag-default-setup-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PROMPTDAG_AUTO_SERVER")}
    env["PREFECT_HOME"] = str(home)
    try:
        first, _ = invoke(env)
        ends = [invoke(env)[0] for _ in range(args.runs)]
        firsts = [t for _, t in (invoke(env, "--json") for _ in range(args.runs)) if t]
        imports = []
        for _ in range(args.runs):  # the floor: Python starting and importing Prefect
            started = time.time()
            subprocess.run([sys.executable, "-c", "import prefect"], env=env, check=True)
            imports.append(time.time() - started)
    finally:
        subprocess.run([sys.executable, "-m", "promptdag.cli", "server", "stop"], env=env,
                       capture_output=True, timeout=60)
    print(f"- first run (starts the server): {first:.2f} s end to end")
    print(f"- runs 2..{args.runs + 1}, end to end: {spread(ends)}")
    print(f"- time to the first task: {spread(firsts)}")
    print(f"- for scale, `python -c 'import prefect'`: {spread(imports)}")
    print(f"- load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
