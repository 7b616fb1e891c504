"""Templates are plain text replacement: nothing is evaluated, nothing expanded twice."""

from __future__ import annotations

from promptdag.spec.template import placeholders, render_task_prompt


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


def test_upstream_results_are_shortened_to_fit_appended_ones_first():
    upstream = {"Long A": "a" * 3000, "Long B": "b" * 3000, "Short": "s" * 50, "Used": "u" * 2000}
    prompt = render_task_prompt("Join {{ Used }}", {}, upstream, {"Used"}, max_chars=5000)
    assert len(prompt) <= 5000
    assert "u" * 2000 in prompt  # the explicitly referenced result is whole
    assert "s" * 50 in prompt  # a short result is not cut
    assert "characters of 'Long A' cut to fit the model's context window" in prompt
    assert "characters of 'Long B' cut to fit the model's context window" in prompt
    assert "'Used' cut" not in prompt


def test_referenced_results_are_cut_last_when_appended_ones_are_not_enough():
    upstream = {"Used": "u" * 4000, "Other": "o" * 4000}
    prompt = render_task_prompt("Summarise {{ Used }}", {}, upstream, {"Used"}, max_chars=1500)
    assert len(prompt) <= 1500
    assert "characters of 'Used' cut" in prompt and "characters of 'Other' cut" in prompt


def test_a_prompt_that_fits_is_untouched_and_skipped_dependencies_add_nothing():
    upstream = {"Ran": "result", "Skipped": ""}
    prompt = render_task_prompt("Join", {}, upstream, set(), max_chars=10_000)
    assert prompt == "Join\n\n## Results of earlier tasks\n\n### Ran\nresult"
