"""The benchmark command runs end to end and produces its tables (structure only, never timings:
CI machines are noisy, the figures that matter are in docs/benchmarks.md's full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import schedules
from benchmarks.shapes import suite

ROOT = Path(__file__).resolve().parents[2]


def test_ideal_list_schedule_follows_the_engine_rule():
    shapes = {s.name: s.plan() for s in suite("full")}
    # A long root declared first: independent tasks fill the free slots while it runs.
    plan = shapes["long root first"]
    makespan, start = schedules.ideal_list_schedule(plan)
    assert makespan == pytest.approx(schedules.lower_bound(plan))
    assert start["independent 0"] == 0.0
    assert start["after root 0"] == pytest.approx(plan.latency["long root"])
    # Skewed chains: no barrier, so each chain runs at its own pace.
    chains = shapes["skewed chains 4x6"]
    assert schedules.ideal_list_schedule(chains)[0] < schedules.stage_barrier_schedule(chains)
    for plan in shapes.values():
        ideal, _ = schedules.ideal_list_schedule(plan)
        assert schedules.lower_bound(plan) - 1e-9 <= ideal <= schedules.sequential(plan) + 1e-9


@pytest.mark.timeout(240)
def test_smoke_benchmark_prints_every_table(tmp_path: Path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    for heading in ("**Scheduling quality**", "**Overhead**", "**Start-up**", "**Targets**"):
        assert heading in table
    assert "| shape | tasks | breadth | runs | lower bound | ideal list (exact) |" in table
    assert "| ready set (asyncio) | promptdag |" in table
    assert "| fan-out 6 |" in table and "| random 20 |" in table
    assert "| local server running |" in table

    data = json.loads(out.read_text())
    assert data["mode"] == "smoke"
    assert {r["shape"] for r in data["quality"]} == {s.name for s in suite("smoke")}
    for row in data["quality"]:
        assert set(row["median"]) == {"stage_barrier", "naive_prefect", "ready_set", "promptdag"}
        assert isinstance(row["meets_target"], bool)
    assert [row["tasks"] for row in data["overhead"]] == [20]
    assert data["startup"]["local server running"]["first_task"] is not None
    assert len(data["targets"]) == 4


def test_a_full_run_replaces_its_tables_in_the_docs_page(tmp_path: Path):
    from benchmarks.publish import DOC, publish

    page = tmp_path / "benchmarks.md"
    page.write_text("intro\n<!-- benchmarks:full:start -->\nold\n"
                    "<!-- benchmarks:full:end -->\nend\n")
    assert publish("full", "| new | table |", page)
    assert page.read_text() == ("intro\n<!-- benchmarks:full:start -->\n| new | table |\n"
                                "<!-- benchmarks:full:end -->\nend\n")
    assert not publish("batch", "x", page)  # no such section: nothing written
    for section in ("full", "batch"):  # the real page has both sections
        assert f"<!-- benchmarks:{section}:start -->" in DOC.read_text()
