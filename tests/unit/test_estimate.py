"""Estimates: the list schedule of a spec's DAG at its breadth, with per-model latencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import schedules
from benchmarks.shapes import suite
from promptdag.engine.estimate import estimate, list_schedule
from promptdag.flows.latency_history import medians
from promptdag.spec.graph import build_graph
from promptdag.spec.models import parse_spec

ROOT = Path(__file__).resolve().parents[2]

# A(2 s) -> {B(1 s), C(6 s), D(3 s)} -> E(1 s) at breadth 2. By hand: A 0-2; B and C start at
# 2; B ends at 3 and D takes its slot (3-6); C ends at 8; E runs 8-9. Sequential: 13 s.
SPEC = """\
name: estimate
config: {breadth: 2, model_options: {latency_s: 1}}
tasks:
  - {name: A, prompt: a, model_options: {latency_s: 2}}
  - {name: B, prompt: b, depends_on: [A]}
  - {name: C, prompt: c, depends_on: [A], latency_hint_s: 6}
  - {name: D, prompt: d, depends_on: [A], model: "openai:gpt-4o-mini"}
  - {name: E, prompt: e, depends_on: [B, C, D]}
"""


def test_list_schedule_of_known_latencies() -> None:
    depends = {"A": [], "B": ["A"], "C": ["A"], "D": ["A"], "E": ["B", "C", "D"]}
    latency = {"A": 2.0, "B": 1.0, "C": 6.0, "D": 3.0, "E": 1.0}
    makespan, start = list_schedule(list(depends), depends, latency, breadth=2)
    assert makespan == 9.0
    assert start == {"A": 0.0, "B": 2.0, "C": 2.0, "D": 3.0, "E": 8.0}
    # Priority first among ready tasks: D before B and C when it is the most urgent.
    _, start = list_schedule(list(depends), depends, latency, breadth=1, priority={"D": 3})
    assert start["D"] == 2.0


def test_validate_prints_the_estimate_of_the_exact_list_schedule(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    done = subprocess.run(
        [sys.executable, "-m", "promptdag.cli", "validate", str(spec_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    # D is an OpenAI model with no hint: the provider default, 6 s. So D takes C's place:
    # A 0-2; B 2-3, C 2-8 (hint 6 s); D 3-9; E 9-10. Sequential 2+1+6+6+1 = 16.
    assert "estimated time: 10.0 s at breadth 2 (sequential 16.0 s, 1.6x speedup)" in done.stdout
    assert "simulated 2.0 s (option)" in done.stdout
    assert "openai:gpt-4o-mini 6.0 s (default)" in done.stdout
    assert "simulated 6.0 s (hint)" in done.stdout


def test_history_wins_over_hints_and_defaults() -> None:
    spec = parse_spec({"name": "h", "config": {"breadth": 3, "latency_hint_s": 9},
                       "tasks": [{"name": n, "prompt": n, "depends_on": []} for n in "abc"]})
    found = estimate(spec, build_graph(spec), {"simulated": (2.0, 5)})
    assert (found.makespan_seconds, found.sequential_seconds, found.speedup) == (2.0, 6.0, 3.0)
    assert found.models[0].source == "history" and found.models[0].samples == 5
    hinted = estimate(spec, build_graph(spec))
    assert hinted.makespan_seconds == 9.0 and hinted.models[0].source == "hint"


def test_estimate_equals_the_benchmarks_ideal_schedule_for_every_shape() -> None:
    for shape in suite("full"):
        plan = shape.plan()
        found = estimate(shape.spec, build_graph(shape.spec))
        ideal, _ = schedules.ideal_list_schedule(plan)
        assert found.makespan_seconds == pytest.approx(ideal), shape.name
        assert found.sequential_seconds == pytest.approx(schedules.sequential(plan)), shape.name
        assert found.critical_path_seconds == pytest.approx(schedules.critical_path(plan))


def test_medians_count_only_real_completed_calls() -> None:
    rows = [{"model": "m", "status": "completed", "reused": False, "duration_s": d}
            for d in (1.0, 2.0, 9.0)]
    rows += [{"model": "m", "status": "completed", "reused": True, "duration_s": 0.0},
             {"model": "m", "status": "failed", "reused": False, "duration_s": 50.0},
             {"model": "few", "status": "completed", "reused": False, "duration_s": 1.0}]
    assert medians(rows) == {"m": (2.0, 3)}
