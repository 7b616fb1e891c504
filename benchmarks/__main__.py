"""`python -m benchmarks [--quick | --smoke] [--json PATH]`: every measurement, one run.

Starts one local Prefect server, runs scheduling quality, overhead and start-up against it,
prints the Markdown table on stdout (progress on stderr) and keeps a copy in
`benchmarks/results/` (`latest.*` for the full run, `latest-quick.*` for `--quick`; `--smoke`,
the CI check, keeps none); a full run also replaces its tables in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Mode:
    """How much to measure: shapes, repeats and overhead sizes."""

    name: str
    repeats: int
    overhead_sizes: tuple[int, ...]
    naive_sizes: tuple[int, ...]
    overhead_repeats: int
    startup_repeats: int
    ephemeral_runs: int  # start-ups without a server: 0 none, 1 fresh home, 2 fresh + repeats


MODES = {
    "full": Mode("full", 3, (100, 1000, 5000), (100, 1000), 3, 3, 2),
    "quick": Mode("quick", 1, (100,), (100,), 1, 1, 0),
    "smoke": Mode("smoke", 1, (20,), (20,), 1, 1, 0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about a minute: smaller shapes")
    size.add_argument("--smoke", action="store_true", help="seconds: checks that it all runs")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--repeats", type=int, help="runs per shape and executor (median)")
    return parser.parse_args(argv)


def run(mode: Mode, repeats: int) -> dict[str, Any]:
    """Every section against one local server; the report as plain data."""
    from benchmarks import overhead, quality, report, shapes, startup
    from benchmarks.server import LocalServer

    clock = time.perf_counter()
    machine = report.machine()
    print(f"benchmarks: {mode.name} mode; starting a local Prefect server ...", file=sys.stderr)
    with LocalServer() as server:
        # Before anything imports Prefect: this process is a client of that server.
        os.environ.update(
            PREFECT_API_URL=server.url,
            PREFECT_HOME=server.home,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="CRITICAL",
            PREFECT_LOGGING_INTERNAL_LEVEL="CRITICAL",
        )
        quality_results = quality.measure(shapes.suite(mode.name), server, repeats)
        overhead_rows = overhead.measure(
            list(mode.overhead_sizes), list(mode.naive_sizes), server, mode.overhead_repeats
        )
        startup_rows = startup.measure(server, mode.startup_repeats, mode.ephemeral_runs)
        server_rss = server.peak_rss_mib()
        server_startup = server.startup_seconds
    if hasattr(os, "getloadavg"):
        machine["load_at_end"] = round(os.getloadavg()[0], 2)
    return {
        "mode": mode.name,
        "repeats": repeats,
        "machine": machine,
        "took_seconds": round(time.perf_counter() - clock, 1),
        "server_startup_seconds": round(server_startup, 2),
        "server_peak_rss_mib": server_rss,
        "quality": quality_results,
        "overhead": overhead_rows,
        "startup": startup_rows,
    }


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.report import targets

    return {
        **result,
        "quality": [r.to_json() for r in result["quality"]],
        "targets": targets(result),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = MODES["quick" if args.quick else "smoke" if args.smoke else "full"]
    result = run(mode, args.repeats or mode.repeats)

    from benchmarks.report import markdown

    table = markdown(result)
    data = json.dumps(to_json(result), indent=2, default=str)
    print(table)
    if args.json:
        args.json.write_text(data + "\n")
    if mode.name != "smoke":
        stem = "latest" if mode.name == "full" else f"latest-{mode.name}"
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{stem}.md").write_text(table)
        (RESULTS / f"{stem}.json").write_text(data + "\n")
    if mode.name == "full":
        from benchmarks.publish import publish

        publish("full", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
