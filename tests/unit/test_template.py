"""Templates are plain text replacement: nothing is evaluated, nothing expanded twice."""

from __future__ import annotations

from promptdag.template import placeholders, render_task_prompt


def test_placeholders_in_order_without_repeats():
    assert placeholders("{{ A }} then {{B}} and {{  A  }}") == ["A", "B"]


def test_context_and_upstream_values_are_inserted():
    prompt = render_task_prompt(
        "Write about {{ topic }} using {{ Research }}", {"topic": "AI"}, {"Research": "facts"}
    )
    assert prompt == "Write about AI using facts"


def test_unreferenced_upstream_results_are_appended():
    prompt = render_task_prompt("Summarise", {}, {"A": "alpha", "B": "beta"})
    assert prompt == "Summarise\n\n## Results of earlier tasks\n\n### A\nalpha\n\n### B\nbeta"


def test_results_containing_template_syntax_are_not_expanded_again():
    prompt = render_task_prompt("Use {{ A }}", {"secret": "S3CRET"}, {"A": "{{ secret }}"})
    assert prompt == "Use {{ secret }}"


def test_python_format_and_jinja_syntax_are_left_alone():
    text = "{__import__('os')} {% for x in y %} {{ 1 + 1 }}"
    assert render_task_prompt(text, {}, {}) == text
