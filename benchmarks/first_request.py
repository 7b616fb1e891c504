"""Fixed cost: from starting `promptdag run` to its first model request, with a server up.

The README's first command (`promptdag run examples/seed_api_request.json`) run again and again
against an already running Prefect server, side by side in one run with what Prefect itself
costs. Each round, in turn:

- `python -c "import prefect"`: the interpreter's start and Prefect's import, to its exit
  (what no promptdag command can go below);
- the example on its own model (`simulated`, no network): to its first task's start, read from
  the result JSON (`started_at`): the simulated model answers within that task at once;
- the example with `--model openai:gpt-4o-mini` against a loopback OpenAI-compatible server
  (tests/providers/servers.py): to the moment that server receives the first request.

The clock starts just before the process is spawned. The client's PREFECT_HOME is used once
before measuring, so every measured run is a second run. Medians of `--repeats` rounds.

    PYTHONPATH=$PWD python -m benchmarks.first_request [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchmarks.report import machine_line
from benchmarks.server import LocalServer, quiet_env
from tests.providers.servers import OpenAIServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seed_api_request.json"
RESULTS = ROOT / "benchmarks" / "results"
KEY = "sk-first-request-benchmark"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("promptdag")
    return [str(script)] if script.exists() else [sys.executable, "-m", "promptdag.cli"]


def import_prefect(env: dict[str, str]) -> float:
    """Seconds for `python -c "import prefect"` to exit."""
    clock = time.monotonic()
    subprocess.run([sys.executable, "-c", "import prefect"], env=env, check=True, timeout=300)
    return time.monotonic() - clock


def simulated(env: dict[str, str]) -> float:
    """Seconds from spawning `promptdag run EXAMPLE --json` to its first task's start."""
    invoked = time.time()
    done = subprocess.run(_cli() + ["run", str(EXAMPLE), "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"promptdag run failed: {done.stderr.strip()[-500:]}")
    tasks = json.loads(done.stdout)["tasks"]
    return min(datetime.fromisoformat(t["started_at"]).timestamp() for t in tasks) - invoked


def openai(env: dict[str, str], server: OpenAIServer) -> float:
    """Seconds from spawning the example on an OpenAI model to the server's first request."""
    server.requests.clear()
    clock = time.monotonic()  # Seen.start is the same (system-wide) monotonic clock
    done = subprocess.run(_cli() + ["run", str(EXAMPLE), "--json", "--model",
                                    "openai:gpt-4o-mini"],
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not server.requests:
        raise RuntimeError(f"promptdag run failed: {done.stderr.strip()[-500:]}")
    return min(seen.start for seen in server.requests) - clock


def measure(repeats: int, api_url: str | None) -> dict[str, list[float]]:
    """`repeats` rounds against a new local server, or the one at `api_url`."""
    workdir = Path(tempfile.mkdtemp(prefix="promptdag-first-request-"))
    samples: dict[str, list[float]] = {"import prefect": [], "simulated": [], "openai": []}
    model = OpenAIServer(KEY, usage=(12, 8))
    model.start()
    with contextlib.ExitStack() as stack:
        stack.callback(model.stop)
        server = None if api_url else stack.enter_context(LocalServer())
        env = quiet_env(str(workdir / "home"))
        env.update(PREFECT_API_URL=server.url if server else str(api_url),
                   OPENAI_API_KEY=KEY, OPENAI_BASE_URL=f"{model.url}/v1")
        simulated(env)  # the home's first use: not measured
        openai(env, model)
        for round_ in range(repeats):
            print(f"first_request: round {round_ + 1} ...", file=sys.stderr, flush=True)
            if server:
                server.wait_idle()
            samples["import prefect"].append(import_prefect(env))
            samples["simulated"].append(simulated(env))
            samples["openai"].append(openai(env, model))
    return samples


def table(samples: dict[str, list[float]]) -> str:
    labels = {
        "import prefect": '`python -c "import prefect"` (to exit)',
        "simulated": "`promptdag run examples/seed_api_request.json` (to its first task)",
        "openai": "the same with `--model openai:gpt-4o-mini` (to the server's first request)",
    }
    base = statistics.median(samples["import prefect"])
    rows = ["| what | seconds, median | runs (s) | x import prefect |",
            "| --- | --- | --- | --- |"]
    for key, label in labels.items():
        median = statistics.median(samples[key])
        rows.append(f"| {label} | {median:.2f} | "
                    f"{', '.join(f'{s:.2f}' for s in samples[key])} | {median / base:.2f}x |")
    note = f"\nSecond runs against a running local Prefect server; {machine_line()}\n"
    return "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_request",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--api-url", help="a running Prefect server's API (default: start one)")
    args = parser.parse_args(argv)
    text = table(measure(args.repeats, args.api_url))
    print(text)
    (RESULTS / "first-request-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
