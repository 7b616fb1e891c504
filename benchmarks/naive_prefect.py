"""Reference (d): the straightforward Prefect version of a DAG, as most people first write it.

Every task is submitted up front in topological order with `wait_for=` its dependencies' futures,
on a `ThreadPoolTaskRunner` of `breadth` threads. On prefect 3.8.8 a submitted task resolves its
`wait_for` inside its worker thread, so a task whose inputs are not ready yet holds a thread
while it waits: that is the cost this reference exists to show. Never used by the engine.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import ThreadPoolTaskRunner

from benchmarks.shapes import Plan


@task(name="bench_call_model", task_run_name="{name}", cache_policy=NO_CACHE, persist_result=False)
def call_model(name: str, latency: float) -> str:
    """A model call that takes `latency` seconds (blocking, as a sync SDK call would)."""
    time.sleep(latency)
    return name


@flow(name="bench-naive-prefect", persist_result=False, validate_parameters=False)
def naive_dag(tasks: list[tuple[str, float, list[str]]]) -> float:
    """Submit everything with `wait_for`, wait for all; return the makespan in the flow body."""
    clock = time.perf_counter()
    futures: dict[str, PrefectFuture[str]] = {}
    for name, latency, deps in tasks:
        upstream = [futures[d] for d in deps]
        futures[name] = call_model.submit(name, latency, return_state=False, wait_for=upstream)
    wait(list(futures.values()))
    return time.perf_counter() - clock


def run_naive(plan: Plan) -> float:
    """Run `plan` as the naive Prefect flow on `breadth` threads; its flow-body makespan."""
    tasks = [(n, plan.latency[n], list(plan.depends_on[n])) for n in plan.topological]
    runner: Any = ThreadPoolTaskRunner(max_workers=plan.breadth)
    return float(naive_dag.with_options(task_runner=runner)(tasks))
