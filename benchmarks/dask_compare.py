"""The Dask runner beside the default one, same specs, same Prefect server, one run.

    python -m benchmarks.dask_compare [--quick]

Rows: the seeded random 1,000-task DAG (latencies scaled down so a row takes seconds, not
minutes), 40 tasks of 0.5 s, and 100 no-op tasks (per-task cost). Dask: a local cluster of 2
worker processes on loopback, reached by address. Prints a Markdown table of makespans and the
dask/local ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from benchmarks.server import LocalServer
from benchmarks.shapes import fresh, make_shape, random_dag, sim_task
from promptdag.spec.models import WorkflowSpec


def _on(spec: WorkflowSpec, runner: str, address: str) -> WorkflowSpec:
    config = spec.config.model_copy(update={"reuse_results": False})
    if runner == "dask":
        config = config.model_copy(update={"runner": "dask",
                                           "runner_options": {"address": address}})
    return fresh(spec.model_copy(update={"config": config}))


def _makespan(spec: WorkflowSpec) -> float:
    from promptdag.api import arun

    result = asyncio.run(arun(spec))
    if result.status != "completed":
        raise RuntimeError(f"{spec.name}: {result.summary}")
    return result.elapsed_seconds


def rows(quick: bool) -> list[tuple[str, WorkflowSpec, int]]:
    """(label, spec, task count)"""
    n = 200 if quick else 1000
    random = random_dag(n, scale=0.02, seed=7, breadth=10, depth=12).spec
    wide = make_shape("40 x 0.5 s", "", 10,
                      [sim_task(f"w{i}", 0.5, []) for i in range(40)]).spec
    noop = make_shape("100 no-op", "", 10, [sim_task(f"n{i}", 0.0, []) for i in range(100)]).spec
    return [(f"random {n}-task DAG (0.004-0.04 s tasks)", random, n),
            ("40 tasks of 0.5 s", wide, 40), ("100 no-op tasks", noop, 100)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dask runner beside the local runner")
    parser.add_argument("--quick", action="store_true", help="a 200-task random DAG")
    args = parser.parse_args(argv)
    import distributed
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = LocalServer()
    os.environ["PREFECT_API_URL"] = server.url  # Dask workers inherit it
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=5, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    table: list[dict[str, Any]] = []
    try:
        with temporary_settings({PREFECT_API_URL: server.url}):
            _makespan(_on(rows(True)[2][1], "dask", cluster.scheduler_address))  # warm up
            for label, spec, n in rows(args.quick):
                seconds = {}
                for runner in ("local", "dask"):
                    server.wait_idle()
                    seconds[runner] = _makespan(_on(spec, runner, cluster.scheduler_address))
                table.append({"workload": label, "tasks": n, **seconds})
    finally:
        cluster.close()
        server.stop()
    print("| workload | local | dask | dask / local |")
    print("| --- | --- | --- | --- |")
    for row in table:
        print(f"| {row['workload']} | {row['local']:.2f} s | {row['dask']:.2f} s | "
              f"{row['dask'] / row['local']:.1f}x |")
    print(f"\nper task, 100 no-op: local {table[-1]['local'] * 10:.0f} ms, "
          f"dask {table[-1]['dask'] * 10:.0f} ms ({time.strftime('%Y-%m-%d')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
