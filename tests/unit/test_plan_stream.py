"""The streamed plan's reader: each task as soon as its object is complete, in any layout and
any chunking; a malformed task costs only itself."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from promptdag.engine.plan_stream import PlanStream

TASKS = [
    {"name": "Background", "prompt": "Say what {x} means, \"quoted\"", "depends_on": []},
    {"name": "Costs", "prompt": "Estimate the costs [roughly]", "depends_on": []},
    {"name": "Answer", "prompt": "Combine", "depends_on": ["Background", "Costs"]},
]


def read(text: str, size: int = 1) -> tuple[list[str], PlanStream]:
    stream = PlanStream()
    names: list[str] = []
    for i in range(0, len(text), size):
        names += [t.name for t in stream.feed(text[i:i + size])]
    names += [t.name for t in stream.finish()]
    return names, stream


def test_each_task_comes_out_when_its_closing_brace_arrives():
    text = json.dumps({"tasks": TASKS}, indent=2)
    stream = PlanStream()
    first_end = text.index("}", text.index('"depends_on"')) + 1  # the first task's brace
    assert stream.feed(text[: first_end - 1]) == []
    assert [t.name for t in stream.feed(text[first_end - 1 : first_end])] == ["Background"]
    rest = stream.feed(text[first_end:])
    assert [t.name for t in rest] == ["Costs", "Answer"]
    assert rest[1].depends_on == ["Background", "Costs"]
    assert stream.finish() == [] and stream.rejected == []


@given(st.integers(min_value=1, max_value=40), st.sampled_from(["wrapped", "lines", "fenced"]))
def test_any_chunking_and_layout_gives_the_same_tasks(size: int, layout: str):
    if layout == "wrapped":
        text = json.dumps({"tasks": TASKS})
    elif layout == "lines":
        text = "\n".join(json.dumps(t) for t in TASKS) + "\n"
    else:
        text = "Here is the plan:\n```json\n" + json.dumps({"tasks": TASKS}, indent=1) + "\n```\n"
    names, stream = read(text, size)
    assert names == ["Background", "Costs", "Answer"]
    assert stream.rejected == []


def test_a_broken_line_costs_only_its_own_task():
    text = "\n".join([
        json.dumps(TASKS[0]),
        '{"name": "Broken", "prompt": "an unescaped "quote" and a cut line',
        json.dumps(TASKS[1]),
        '{"name": "No brace", "prompt": "closed by the next one", "depends_on": []',
        json.dumps(TASKS[2]),
    ]) + "\n"
    names, stream = read(text, 7)
    assert names == ["Background", "Costs", "No brace", "Answer"]
    assert len(stream.rejected) == 1 and "Broken" in stream.rejected[0]


def test_an_invalid_task_is_rejected_with_its_reason_and_reading_goes_on():
    text = json.dumps({"tasks": [TASKS[0], {"name": "Empty", "prompt": ""},
                                 {"name": "No prompt"}, TASKS[1]]})
    names, stream = read(text, 5)
    assert names == ["Background", "Costs"]
    assert any("'Empty'" in r for r in stream.rejected)
    assert any("No prompt" in r and "prompt" in r for r in stream.rejected)


def test_an_answer_cut_by_the_token_limit_keeps_what_was_written_whole():
    whole = json.dumps({"tasks": TASKS})
    cut_in_third = whole[: whole.index('"Answer"') + len('"Answer", "prompt": "Comb')]
    names, _ = read(cut_in_third, 3)
    assert names == ["Background", "Costs"]  # the third's prompt was cut mid-string
    cut_in_deps = whole[: whole.index('["Background", "Costs"]') + len('["Background", "Co')]
    names, _ = read(cut_in_deps, 3)
    assert names == ["Background", "Costs", "Answer"]  # closed where it stopped


def test_prose_without_a_plan_gives_no_task():
    names, stream = read("I cannot plan that; {it is} unclear [sorry].", 4)
    assert names == [] and stream.rejected == []


def test_objective_limits_reach_every_call_and_leave_a_plan_room_for_its_tasks():
    from promptdag.engine.objective import ObjectiveConfig

    config = ObjectiveConfig(max_tokens=16, temperature=0.1, max_tasks=3,
                             model_options={"max_tokens": 900, "seed": 1})
    assert config.model_options == {"max_tokens": 16, "temperature": 0.1, "seed": 1}
    assert 16 < (config.structured_tokens() or 0) < 1024
    assert ObjectiveConfig().structured_tokens() is None  # the roles' default floor
