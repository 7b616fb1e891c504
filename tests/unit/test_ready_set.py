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


# -- tasks added while the workflow runs --------------------------------------------------


def test_an_added_task_waits_for_its_dependencies_and_holds_back_a_later_one():
    state = ready_set(DIAMOND)
    assert drain(state) == ["A", "E"]
    state.add("A2", ["A"], priority=3, before=["D"])  # D now waits for A2 too
    assert state.total == 6 and state.order.index("A2") == state.order.index("D") - 1
    state.settle(done("A", "from a"))
    assert drain(state) == ["A2", "C", "B"]  # critical priority first
    state.settle(done("B"))
    state.settle(done("C"))
    assert drain(state) == []  # D still waits for A2
    state.settle(done("A2", "more"))
    assert drain(state) == ["D"]
    assert state.inputs("D")[0] == {"B": "ok", "C": "ok", "A2": "more"}
    assert state.inputs("A2")[0] == {"A": "from a"}


def test_an_added_task_whose_inputs_are_settled_is_ready_at_once_and_counted():
    state = ready_set(DIAMOND)
    drain(state)
    state.settle(done("A"))
    state.add("late", ["A"])
    assert "late" in drain(state)
    state.settle(done("late"))
    assert state.results["late"].status == "completed" and "late" in state.added
    assert [r.name for r in state.finish("x")][-1] == "late"


def test_a_popped_task_can_be_held_back_for_added_tasks_then_runs_after_them():
    state = ready_set(DIAMOND)
    assert drain(state) == ["A", "E"]
    state.settle(done("A"))
    assert drain(state) == ["C", "B"]
    state.add("C[0]", ["A"], before=["C"])  # the scheduler held C back (a fan-out)
    state.add("C[1]", ["A"], before=["C"])
    assert drain(state) == ["C[0]", "C[1]"]
    state.settle(done("C[0]"))
    state.settle(done("C[1]"))
    assert drain(state) == ["C"]
    assert state.order[:4] == ["A", "B", "C[0]", "C[1]"]


def test_an_added_task_obeys_when_and_failures_upstream():
    state = ready_set(BRANCHES)
    drain(state)
    state.settle(done("Assess", output={"label": "simple", "reason": "r"}))
    state.add("Deep", ["Assess"], when="{{ Assess.label }} == 'complex'")
    assert state.results["Deep"].skip_reason == "condition"
    failing = ready_set(DIAMOND)
    drain(failing)
    failing.settle(failed("A"))
    failing.add("After A", ["A"])
    assert failing.results["After A"].skip_reason == "upstream_failed"
    try:
        failing.add("After A", [])
    except ValueError as exc:
        assert "exists already" in str(exc)
    else:
        raise AssertionError("a second task of one name was accepted")


def test_skip_settles_a_popped_task_as_a_branch_not_taken_and_cascades():
    state = ready_set(DIAMOND)
    drain(state)
    state.settle(done("A"))
    assert drain(state) == ["C", "B"]
    state.skip("C", "for_each gave no items")
    state.skip("B", "for_each gave no items")
    assert state.results["D"].error == "skipped: every dependency was skipped"
    assert state.results["C"].skip_reason == "condition"
