"""Hostile input never costs a traceback, a hang or a recursion error: either a clean one-line
SpecError (exit 2 from the CLI) or a valid spec whose graph is correct."""

from __future__ import annotations

import json
import os
import string
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptdag import SpecError, parse_spec, validate_spec
from promptdag.cli._terminal import safe
from promptdag.cli.main import main
from promptdag.spec.input_limits import read_text
from promptdag.spec.models import load_spec
from promptdag.spec.template import render_task_prompt

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
names = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() == s and s.strip())


def check_outcome(data: object) -> None:
    """Either SpecError with one line, or a valid spec with a correct topological order."""
    try:
        spec = parse_spec(data)
        graph = validate_spec(spec)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    order = graph.topological_order()
    position = {name: i for i, name in enumerate(order)}
    assert sorted(order) == sorted(graph.names)
    for name in graph.names:
        assert all(position[dep] < position[name] for dep in graph.depends_on[name])


@SETTINGS
@given(json_values)
def test_random_json_values_never_crash(data):
    check_outcome(data)


@st.composite
def random_workflows(draw):
    """Specs with random names (unicode, templates, huge), random dependencies and fields."""
    task_names = draw(st.lists(names | st.text(max_size=300), min_size=1, max_size=12))
    tasks = []
    for name in task_names:
        task: dict = {
            "name": name,
            "prompt": draw(
                st.sampled_from(
                    [
                        "plain",
                        "{{ " + draw(st.sampled_from(task_names)) + " }}",
                        "{{ nope }}",
                        "{% raw %}{{ 1 + 1 }}",
                        "{__import__('os').system('x')}",
                        "",
                        " \u200b",
                    ]
                )
            ),
        }
        if draw(st.booleans()):
            task["depends_on"] = draw(st.lists(st.sampled_from(task_names + ["ghost"]), max_size=4))
        if draw(st.booleans()):
            task["task_type"] = draw(st.sampled_from(["sequential", "parallel", "hybrid", "x"]))
        if draw(st.booleans()):
            task["context"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
        if draw(st.booleans()):
            task[draw(st.sampled_from(["priority", "max_retries", "model", "bogus"]))] = draw(
                json_values
            )
        tasks.append(task)
    return {
        "name": draw(names),
        "tasks": tasks,
        "config": draw(
            st.dictionaries(
                st.sampled_from(["breadth", "failure_mode", "timeout_seconds", "model"]),
                json_values,
                max_size=2,
            )
        ),
    }


@SETTINGS
@given(random_workflows())
def test_random_workflows_validate_cleanly_or_are_correct(data):
    check_outcome(data)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_in_a_spec_file_are_a_clean_error(tmp_path: Path, raw: bytes):
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"spec{suffix}"
        path.write_bytes(raw)
        try:
            load_spec(path)
        except SpecError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "- " * 50_000 + "x"])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_absurd_nesting_is_a_clean_error(tmp_path: Path, text: str, suffix: str):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(SpecError):
        load_spec(path)


def test_deep_chains_and_huge_fan_outs_validate(tmp_path: Path, capsys):
    chain = [{"name": "t0", "prompt": "start"}] + [
        {"name": f"t{i}", "prompt": "{{ t" + str(i - 1) + " }}"} for i in range(1, 5000)
    ]
    wide = [{"name": f"w{i}", "prompt": "x", "depends_on": []} for i in range(10_000)]
    for tasks in (chain, wide):
        path = tmp_path / "big.json"
        path.write_text(json.dumps({"name": "big", "tasks": tasks}))
        assert main(["validate", str(path)]) == 0
    capsys.readouterr()


@SETTINGS
@given(
    st.text(alphabet=string.printable, max_size=80),
    st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=40), max_size=2),
)
def test_rendering_is_plain_text_replacement(template: str, context: dict):
    rendered = render_task_prompt(template, context, {})
    # Nothing evaluated: everything not a known placeholder survives as written.
    if "{{" not in template:
        assert rendered == template


@SETTINGS
@given(random_workflows())
def test_the_cli_answers_bad_specs_with_one_line_and_exit_2(tmp_path: Path, capsys, data):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert out.out == "" and len(out.err.strip().splitlines()) == 1
        assert "Traceback" not in out.err


# Issue 17: the classes of hostile input beyond what the generators above produce (aliases,
# special files, depth, size, control characters), so they stay fixed.


BOUNDED = settings(SETTINGS, max_examples=60)


def anchors(fan_out: int, levels: int) -> tuple[str, int]:
    """YAML lines of nested anchors (each level aliases the one before `fan_out` times) and the
    number of values they expand to."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * fan_out) + "]"]
    size = total = 1 + fan_out
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan_out) + "]")
        size = 1 + fan_out * size
        total += size
    return "\n".join(lines), total + 2 * levels  # + a key per level


@BOUNDED
@given(st.integers(1, 8), st.integers(1, 12), st.sampled_from(["context", "model_options"]))
def test_yaml_aliases_expand_within_the_bound_or_are_refused_at_once(
    tmp_path: Path, monkeypatch, fan_out: int, levels: int, where: str
):
    monkeypatch.setenv("PROMPTDAG_MAX_SPEC_VALUES", "20000")
    body, expanded = anchors(fan_out, levels)
    text = ("name: w\ntasks:\n  - name: t\n    prompt: p\n    " + where + ":\n"
            + "\n".join("      " + line for line in body.splitlines()) + "\n")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    started = time.monotonic()
    for load in (lambda: load_spec(path),  # from a file: counted while parsing
                 lambda: parse_spec(yaml.safe_load(text))):  # shared dicts from an API caller
        try:
            validate_spec(load())
            assert expanded < 20_000
        except SpecError as exc:
            assert expanded > 19_900 and "PROMPTDAG_MAX_SPEC_VALUES" in str(exc), str(exc)
    assert time.monotonic() - started < 30  # never the expansion's time (8^12 values)


def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    link = tmp_path / "link.yaml"
    link.symlink_to(fifo)
    found = {"fifo": fifo, "symlink to a fifo": link, "directory": tmp_path}
    found.update({dev: Path(dev) for dev in ("/dev/zero", "/dev/null", "/dev/urandom")
                  if Path(dev).exists()})
    return found


def test_special_files_are_refused_without_reading_them(tmp_path: Path, capsys):
    for kind, path in special_files(tmp_path).items():
        with pytest.raises(SpecError, match="expected a spec file"):
            load_spec(path)
        for args in (["validate", str(path)], ["objective", "x", "--context-file", str(path)],
                     ["objective", "--request", str(path)]):
            assert main(args) == 2, (kind, args)
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and "is a" in err, (kind, err)


@BOUNDED
@given(st.integers(1, 260), st.sampled_from([".json", ".yaml"]), st.booleans())
def test_depth_is_bounded_alike_for_every_reader(tmp_path: Path, depth: int, suffix: str,
                                                 as_list: bool):
    value: object = "leaf"
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    data = {"name": "w", "tasks": [{"name": "t", "prompt": "p", "context": {"c": value}}]}
    path = tmp_path / f"deep{suffix}"
    path.write_text(json.dumps(data))  # JSON is YAML too
    total = 4 + depth  # spec, tasks, the task, its context, then `depth` more
    for load in (lambda: load_spec(path), lambda: parse_spec(data)):
        try:
            spec = load()
            validate_spec(spec)
        except SpecError as exc:
            assert total > 100 and "PROMPTDAG_MAX_SPEC_DEPTH" in str(exc), str(exc)
            continue
        assert total <= 100
        json.loads(spec.model_dump_json())  # what a run sends to Prefect serialises


@BOUNDED
@given(st.integers(0, 2_500), st.integers(0, 2_500), st.integers(0, 2_500))
def test_file_prompt_and_context_sizes_are_bounded(tmp_path: Path, monkeypatch, file_bytes: int,
                                                   prompt: int, context: int):
    monkeypatch.setenv("PROMPTDAG_MAX_SPEC_BYTES", "2000")
    monkeypatch.setenv("PROMPTDAG_MAX_PROMPT_CHARS", "1000")
    monkeypatch.setenv("PROMPTDAG_MAX_CONTEXT_BYTES", "1000")
    path = tmp_path / "blob.txt"
    path.write_bytes(b"x" * file_bytes)
    try:
        assert read_text(path) == "x" * file_bytes and file_bytes <= 2000
    except SpecError as exc:
        assert file_bytes > 2000 and "PROMPTDAG_MAX_SPEC_BYTES" in str(exc)
    monkeypatch.setenv("PROMPTDAG_MAX_SPEC_BYTES", "100000")  # the task's own limits, below
    data = {"name": "w", "tasks": [{"name": "t", "prompt": "p" * max(prompt, 1),
                                    "context": {"c": "c" * context}}]}
    try:
        validate_spec(parse_spec(data))
        assert prompt <= 1000 and context <= 1000
    except SpecError as exc:
        assert "PROMPTDAG_MAX_" in str(exc) and (prompt > 1000 or context > 990), str(exc)


DANGEROUS = {*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F,
             *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029}
hostile_text = st.text(
    alphabet=st.sampled_from([chr(c) for c in sorted(DANGEROUS)]) | st.characters(), max_size=40
)


@SETTINGS
@given(hostile_text)
def test_safe_text_has_no_terminal_controls_and_keeps_the_rest(text: str):
    for multiline in (False, True):
        shown = safe(text, multiline)
        kept = {0x0A, 0x09} if multiline else set()
        assert not {ord(c) for c in shown} & (DANGEROUS - kept)
        if not any(ord(c) in DANGEROUS for c in text):
            assert shown == text
    assert "\n" not in safe(text) and safe("a\nb", multiline=True) == "a\nb"


@SETTINGS
@given(st.lists(hostile_text.map(lambda s: f"t{s}".strip()), min_size=1, max_size=4,
                unique=True))
def test_the_cli_prints_hostile_names_escaped(tmp_path: Path, capsys, task_names: list[str]):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"name": "w", "tasks": [
        {"name": name, "prompt": "x", "depends_on": [task_names[0], "ghost\x1b[2J"][:1 + i % 2]}
        for i, name in enumerate(task_names)]}))
    main(["validate", str(path)])
    main(["graph", str(path)])
    out = capsys.readouterr()
    for stream in (out.out, out.err):
        assert not {ord(c) for c in stream} & (DANGEROUS - {0x0A})
