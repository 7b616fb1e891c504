"""The scheduler's decisions without Prefect: readiness, priority, branches, joins, failure
modes, cancellation. (flows/scheduler.py only runs the loop around them.)"""

from __future__ import annotations

from promptdag.engine.ready_set import ReadySet
from promptdag.engine.results import TaskResult
from promptdag.spec.graph import build_graph
from promptdag.spec.models import parse_spec


def ready_set(tasks: list[dict], mode: str = "skip_dependents") -> ReadySet:
    spec = parse_spec({"name": "w", "config": {"failure_mode": mode}, "tasks": tasks})
    return ReadySet(build_graph(spec), spec.config.failure_mode)


def drain(state: ReadySet) -> list[str]:
    started = []
    while state.has_ready():
        started.append(state.pop())
    return started


def done(name: str, text: str = "ok", output: dict | None = None) -> TaskResult:
    return TaskResult(name=name, status="completed", result=text, output=output)


def failed(name: str) -> TaskResult:
    return TaskResult(name=name, status="failed", error="boom")


DIAMOND = [
    {"name": "A", "prompt": "a", "depends_on": []},
    {"name": "B", "prompt": "b", "depends_on": ["A"]},
    {"name": "C", "prompt": "c", "depends_on": ["A"], "priority": "high"},
    {"name": "D", "prompt": "d", "depends_on": ["B", "C"]},
    {"name": "E", "prompt": "e", "depends_on": []},
]


def test_a_task_is_ready_when_its_own_dependencies_are_done_priority_first():
    state = ready_set(DIAMOND)
    assert drain(state) == ["A", "E"]
    state.settle(done("A", "from a"))
    assert drain(state) == ["C", "B"]  # high priority first, then declaration order
    state.settle(done("C"))
    assert drain(state) == []  # D still waits for B
    state.settle(done("B"))
    assert drain(state) == ["D"]
    assert state.inputs("D")[0] == {"B": "ok", "C": "ok"}


def test_skip_dependents_skips_everything_downstream_and_runs_the_rest():
    state = ready_set(DIAMOND)
    drain(state)
    state.settle(failed("A"))
    assert {n: state.results[n].status for n in "BCD"} == dict.fromkeys("BCD", "skipped")
    assert state.results["D"].skip_reason == "upstream_failed"
    assert not state.stopping
    state.settle(done("E"))
    assert [r.status for r in state.finish("unused")] == [
        "failed", "skipped", "skipped", "skipped", "completed"]


def test_continue_hands_dependents_the_failure_text():
    state = ready_set(DIAMOND, "continue")
    drain(state)
    state.settle(failed("A"))
    assert sorted(drain(state)) == ["B", "C"]
    assert state.inputs("B")[0] == {"A": "[task 'A' failed: boom]"}


def test_fail_fast_starts_nothing_more_and_cancels_what_never_ran():
    state = ready_set(DIAMOND, "fail_fast")
    assert drain(state) == ["A", "E"]
    state.settle(failed("E"))
    state.settle(done("A"))
    assert state.stopping and drain(state) == []
    results = {r.name: r for r in state.finish("stopped")}
    assert results["B"].status == "cancelled" and results["B"].error == "stopped"


BRANCHES = [
    {"name": "Assess", "prompt": "x", "output_schema": "classification"},
    {"name": "Simple", "prompt": "s", "when": "{{ Assess.label }} == 'simple'",
     "depends_on": ["Assess"]},
    {"name": "Complex", "prompt": "c", "when": "{{ Assess.label }} == 'complex'",
     "depends_on": ["Assess"]},
    {"name": "After simple", "prompt": "a", "depends_on": ["Simple"]},
    {"name": "Join", "prompt": "j", "depends_on": ["Simple", "Complex"]},
]


def test_a_branch_not_taken_is_skipped_with_its_chain_and_the_join_runs_without_it():
    state = ready_set(BRANCHES)
    assert drain(state) == ["Assess"]
    state.settle(done("Assess", output={"label": "complex", "reason": "r"}))
    assert drain(state) == ["Complex"]
    assert state.results["Simple"].skip_reason == "condition"
    assert state.results["After simple"].error == "skipped: every dependency was skipped"
    state.settle(done("Complex", "deep"))
    assert drain(state) == ["Join"]
    assert state.inputs("Join")[0] == {"Simple": "", "Complex": "deep"}


def test_every_recorded_result_is_heard_with_how_many_have_settled():
    heard: list[tuple[str, int]] = []
    spec = parse_spec({"name": "w", "tasks": BRANCHES})
    state = ReadySet(build_graph(spec), "skip_dependents",
                     on_record=lambda result, settled: heard.append((result.name, settled)))
    state.pop()
    state.settle(done("Assess", output={"label": "simple", "reason": "r"}))
    assert heard[0] == ("Assess", 1) and ("Complex", 2) in heard
