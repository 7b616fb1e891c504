"""Scheduling is exact: breadth, priority, no stage barriers, no slot held while waiting.

Intervals are recorded inside the model call (the `probe` provider), so they show when a
breadth slot was really busy; assertions compare orders and overlaps, never wall-clock limits.
"""

from __future__ import annotations

from promptdag.api import arun


def probe_task(name: str, latency: float, deps: list[str] | None = None, **fields) -> dict:
    return {
        "name": name,
        "prompt": f"Do {name}",
        "model": "probe:x",
        "model_options": {"latency_s": latency},
        "depends_on": deps or [],
        **fields,
    }


def workflow(*tasks: dict, breadth: int) -> dict:
    return {
        "name": "sched",
        "config": {"breadth": breadth, "retry_backoff_seconds": 0},
        "tasks": list(tasks),
    }


async def test_breadth_is_never_exceeded_and_is_used(probe):
    # 1 s calls: three overlap even when a busy machine starts one late
    await arun(workflow(*[probe_task(f"t{i}", 1.0) for i in range(10)], breadth=3))
    assert len(probe.calls) == 10
    assert probe.max_overlap() == 3


async def test_ready_tasks_start_by_priority_then_declaration(probe):
    await arun(
        workflow(
            probe_task("low", 0.05, priority="low"),
            probe_task("n1", 0.05),
            probe_task("critical", 0.05, priority="critical"),
            probe_task("high", 0.05, priority="high"),
            probe_task("n2", 0.05),
            breadth=1,
        )
    )
    assert probe.starts() == ["critical", "high", "n1", "n2", "low"]


async def test_no_stage_barrier_a_fast_chain_overtakes_a_slow_sibling(probe):
    await arun(
        workflow(
            probe_task("root", 0.01),
            probe_task("slow", 5.0, ["root"]),  # room for three task starts when busy
            probe_task("fast", 0.05, ["root"]),
            probe_task("after_fast", 0.05, ["fast"]),
            probe_task("after_after", 0.05, ["after_fast"]),
            breadth=3,
        )
    )
    # after_fast's stage-mate 'slow' is still running when the whole fast chain is done.
    assert probe.call("after_after").end < probe.call("slow").end
    assert probe.call("after_fast").start >= probe.call("fast").end


async def test_a_task_waiting_for_inputs_holds_no_slot(probe):
    # 'waiter' is declared first but needs 'slow'; with breadth 2 the independent tasks must
    # still run one after another beside 'slow' instead of queueing behind 'waiter'.
    await arun(
        workflow(
            probe_task("slow", 5.0),  # room for three task starts beside it when busy
            probe_task("waiter", 0.05, ["slow"]),
            probe_task("b", 0.1),
            probe_task("c", 0.1),
            probe_task("d", 0.1),
            breadth=2,
        )
    )
    slow = probe.call("slow")
    assert all(probe.call(n).end < slow.end for n in ("b", "c", "d"))
    assert probe.call("waiter").start >= slow.end
    assert probe.max_overlap() == 2


async def test_a_dependent_starts_as_soon_as_its_own_inputs_are_ready(probe):
    await arun(
        workflow(
            probe_task("a", 0.1),
            probe_task("b", 5.0),  # room for needs_a to start when busy
            probe_task("needs_a", 0.1, ["a"]),
            probe_task("needs_both", 0.05, ["a", "b"]),
            breadth=4,
        )
    )
    assert probe.call("needs_a").start < probe.call("b").end
    assert probe.call("needs_both").start >= probe.call("b").end
