"""Dependencies: implied stages, references, validation errors that say how to fix them."""

from __future__ import annotations

import pytest

from promptdag import SpecError, build_graph, parse_spec, validate_spec


def spec(*tasks: dict, **config):
    return parse_spec({"name": "w", "config": config, "tasks": list(tasks)})


def t(name: str, prompt: str = "do it", **fields) -> dict:
    return {"name": name, "prompt": prompt, **fields}


def test_implied_stages_follow_task_types():
    g = build_graph(
        spec(
            t("A"),
            t("B", task_type="parallel"),
            t("C", task_type="parallel"),
            t("D", task_type="hybrid"),
            t("E"),
        )
    )
    assert g.depends_on == {"A": (), "B": ("A",), "C": ("A",), "D": ("A",), "E": ("B", "C", "D")}
    assert g.levels() == [["A"], ["B", "C", "D"], ["E"]]


def test_consecutive_sequential_tasks_form_a_chain():
    g = build_graph(spec(t("A"), t("B"), t("C")))
    assert g.depends_on == {"A": (), "B": ("A",), "C": ("B",)}


def test_explicit_depends_on_is_taken_exactly_as_written():
    g = build_graph(spec(t("A"), t("B", depends_on=[]), t("C", depends_on=["A"])))
    assert g.depends_on == {"A": (), "B": (), "C": ("A",)}


def test_a_reference_to_a_task_is_a_dependency_and_context_keys_are_not():
    g = build_graph(
        spec(
            t("Research", depends_on=[]),
            t(
                "Write",
                "Use {{ Research }} for {{ topic }}",
                depends_on=[],
                context={"topic": "AI"},
            ),
        )
    )
    assert g.depends_on["Write"] == ("Research",)


def test_unknown_dependency_suggests_the_closest_name():
    with pytest.raises(SpecError) as err:
        build_graph(spec(t("Research"), t("Synthesize", depends_on=["Reserch"])))
    assert str(err.value) == (
        "task 'Synthesize' depends on 'Reserch', which does not exist; did you mean 'Research'?"
    )


def test_unknown_reference_is_rejected_with_a_suggestion():
    with pytest.raises(SpecError, match=r"\{\{ Reserch \}\}.*did you mean 'Research'"):
        build_graph(spec(t("Research"), t("Synthesize", "Summarise {{ Reserch }}")))


def test_a_name_that_is_both_task_and_context_key_is_ambiguous():
    with pytest.raises(SpecError, match="both a task and a key of its context"):
        build_graph(spec(t("A"), t("B", "{{ A }}", context={"A": 1})))


def test_duplicates_and_self_dependencies_are_named():
    with pytest.raises(SpecError, match=r"task 'A' is declared twice \(tasks #1 and #3\)"):
        build_graph(spec(t("A"), t("B"), t("A")))
    with pytest.raises(SpecError, match="task 'A' depends on itself; remove 'A'"):
        build_graph(spec(t("A", depends_on=["A"])))


def test_a_cycle_is_shown_as_a_path():
    with pytest.raises(SpecError) as err:
        build_graph(
            spec(t("A", depends_on=["C"]), t("B", depends_on=["A"]), t("C", depends_on=["B"]))
        )
    message = str(err.value)
    assert message.startswith("dependency cycle: ")
    path = message.split(": ", 1)[1].split(";")[0].split(" -> ")
    assert path[0] == path[-1] and sorted(set(path)) == ["'A'", "'B'", "'C'"]


def test_priority_then_declaration_orders_ready_tasks():
    g = build_graph(
        spec(
            t("low", priority="low", depends_on=[]),
            t("n1", depends_on=[]),
            t("crit", priority="critical", depends_on=[]),
            t("n2", depends_on=[]),
        )
    )
    assert g.topological_order() == ["crit", "n1", "n2", "low"]


def test_critical_path_uses_weights():
    g = build_graph(
        spec(
            t("A", depends_on=[]),
            t("B", depends_on=["A"]),
            t("C", depends_on=["A"]),
            t("D", depends_on=["B", "C"]),
        )
    )
    assert g.critical_path({"A": 1, "B": 1, "C": 5, "D": 1}) == (["A", "C", "D"], 7.0)


def test_deep_chains_do_not_hit_the_recursion_limit():
    n = 5000
    tasks = [t("t0")] + [t(f"t{i}", depends_on=[f"t{i - 1}"]) for i in range(1, n)]
    g = build_graph(spec(*tasks))
    assert len(g.topological_order()) == n and g.critical_path()[1] == n
    cyclic = [t("t0", depends_on=[f"t{n - 1}"])] + tasks[1:]
    with pytest.raises(SpecError, match=r"dependency cycle: .*\(a cycle of 5000 tasks\)"):
        build_graph(spec(*cyclic))


def test_mermaid_lists_nodes_and_edges():
    text = build_graph(spec(t("A"), t('B "quoted"'))).mermaid()
    assert text.splitlines() == [
        "graph TD",
        '    t0["A"]',
        '    t1["B &quot;quoted&quot;"]',
        "    t0 --> t1",
    ]


def test_unknown_model_is_rejected_before_running():
    with pytest.raises(
        SpecError, match="task 'A': unknown model 'simulatd'.*did you mean 'simulated'"
    ):
        validate_spec(spec(t("A", model="simulatd")))
    with pytest.raises(SpecError, match="task 'A': simulated model option 'latency_s'"):
        validate_spec(spec(t("A", model_options={"latency_s": -1})))
