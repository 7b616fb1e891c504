"""The dependency heuristics (seed 002): named tasks first, sequential order when unsure."""

from __future__ import annotations

from promptdag.spec.dependencies import heuristic_dependencies, keyword_dependencies


def test_a_prompt_that_names_earlier_tasks_depends_on_them():
    tasks = [("Paris", "Research Paris"), ("Rome", "Research Rome"),
             ("Compare", "Compare the Paris and Rome findings")]
    assert heuristic_dependencies(tasks)["Compare"] == ["Paris", "Rome"]


def test_without_names_the_previous_task_is_a_safe_dependency():
    tasks = [("a", "one"), ("b", "two"), ("c", "three")]
    assert heuristic_dependencies(tasks) == {"a": [], "b": ["a"], "c": ["b"]}


def test_names_match_whole_words_only():
    tasks = [("art", "Study art"), ("b", "Discuss the party")]
    assert heuristic_dependencies(tasks)["b"] == ["art"]  # no word match: previous task
    tasks = [("art", "Study art"), ("x", "y"), ("b", "Use the art notes")]
    assert heuristic_dependencies(tasks)["b"] == ["art"]


def test_keyword_analysis_makes_synthesis_depend_on_everything_before():
    tasks = [("A", "Research A"), ("B", "Research B"), ("Report", "Summarize all")]
    assert keyword_dependencies(tasks) == {"A": [], "B": [], "Report": ["A", "B"]}


def test_names_already_used_are_numbered_not_fatal():
    from promptdag.engine.objective import PlannedTask, unique_names

    tasks = [PlannedTask(name="Energy", prompt="a", depends_on=[]),
             PlannedTask(name="Energy", prompt="b", depends_on=["Energy"]),
             PlannedTask(name="Costs", prompt="c", depends_on=["Energy"])]
    renamed = unique_names(tasks, {"Costs": "earlier result"})
    assert [t.name for t in renamed] == ["Energy", "Energy (2)", "Costs (2)"]
    # a reused name means the list's own task, except for the task that took it over
    assert renamed[1].depends_on == ["Energy"] and renamed[2].depends_on == ["Energy"]


def test_a_task_depending_on_itself_or_twice_on_one_task_is_cleaned_not_fatal():
    from promptdag.engine.objective import PlannedTask, unique_names

    tasks = [PlannedTask(name="A", prompt="a", depends_on=[]),
             PlannedTask(name="B", prompt="b", depends_on=["B", "A", "A"])]
    assert unique_names(tasks, set())[1].depends_on == ["A"]


def test_a_plans_plain_slips_are_repaired_and_a_valid_plan_is_left_alone():
    from promptdag.engine.objective import PlannedTask, repair_plan

    slips = [PlannedTask(name="A", prompt="a", depends_on=["Nowhere", "B"]),
             PlannedTask(name="B", prompt="b", depends_on=["A", "Earlier"])]
    repaired = repair_plan(slips, {"Earlier": "text"})
    # unknown names dropped; the A <-> B cycle broken at the dependency on a later task
    assert [t.depends_on for t in repaired] == [[], ["A", "Earlier"]]
    valid = [PlannedTask(name="Synthesis", prompt="s", depends_on=["Research"]),
             PlannedTask(name="Research", prompt="r", depends_on=[])]
    assert repair_plan(valid, set()) == valid  # a forward dependency without a cycle stays
