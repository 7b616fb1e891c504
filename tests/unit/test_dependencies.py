"""The dependency heuristics (seed 002): named tasks first, sequential order when unsure."""

from __future__ import annotations

from promptdag.dependencies import heuristic_dependencies, keyword_dependencies


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
