"""Task runs on a Dask cluster (processes on loopback): same scheduler, same semantics.

Dask workers talk to the Prefect API themselves, so this runs against the package's real
Prefect server; the cluster is started once and reached by address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from promptdag.api import arun

from .conftest import Server

distributed = pytest.importorskip("distributed", reason="prefect-dask is not installed")


@pytest.fixture(scope="module")
def dask_address(prefect_server: Server) -> Iterator[str]:
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = prefect_server.info.api_url  # workers inherit it
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


def on_dask(address: str, *tasks: dict, **config) -> dict:
    return {"name": "on dask", "tasks": list(tasks),
            "config": {"runner": "dask", "runner_options": {"address": address},
                       "retry_backoff_seconds": 0, "reuse_results": False, **config}}


def overlap(result) -> int:
    edges = sorted([(t.started_at, 1) for t in result.tasks if t.started_at]
                   + [(t.finished_at, -1) for t in result.tasks if t.finished_at],
                   key=lambda e: (e[0], e[1]))
    current = best = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


async def test_results_order_and_breadth_hold_on_dask(dask_address: str):
    # 2 s calls: two overlap even when a busy machine starts one a second after the other
    tasks = [{"name": f"r{i}", "prompt": f"research {i}", "depends_on": [],
              "priority": "critical" if i >= 4 else "normal",
              "model_options": {"latency_s": 2}} for i in range(6)]
    tasks.append({"name": "report", "prompt": "Report on {{ r0 }} and {{ r5 }}"})
    result = await arun(on_dask(dask_address, *tasks, breadth=2))
    assert result.status == "completed", [t.error for t in result.tasks]
    report = result.task("report")
    assert result.task("r0").result in (report.prompt or "")
    assert report.depends_on == ["r5", "r0"]
    assert report.started_at >= max(result.task(n).finished_at for n in ("r0", "r5"))  # type: ignore
    assert overlap(result) == 2
    first_two = sorted(result.tasks[:6], key=lambda t: t.started_at)[:2]  # type: ignore
    assert {t.name for t in first_two} == {"r4", "r5"}  # critical before normal


async def test_failure_modes_and_timeouts_hold_on_dask(dask_address: str):
    result = await arun(on_dask(
        dask_address,
        {"name": "broken", "prompt": "x", "depends_on": [], "model_options": {"fail_first": 9}},
        {"name": "after broken", "prompt": "y", "depends_on": ["broken"]},
        {"name": "hangs", "prompt": "z", "depends_on": [], "timeout_seconds": 1,
         "model_options": {"latency_s": 120}},
        {"name": "fine", "prompt": "w", "depends_on": []},
        max_retries=0, failure_mode="skip_dependents",
    ))
    status = {t.name: t.status for t in result.tasks}
    assert status == {"broken": "failed", "after broken": "skipped", "hangs": "failed",
                      "fine": "completed"}
    hangs = result.task("hangs")
    assert hangs.error == "timed out after 1 s"  # enforced by promptdag where Prefect does not
    assert (hangs.duration_seconds or 999) < 60  # ended by the timeout, not its 120 s answer
