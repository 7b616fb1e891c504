"""`promptdag validate --history`: a model's latency is the median of its past task runs, read
from the task tables that runs leave on the Prefect server."""

from __future__ import annotations

import re
from pathlib import Path

from tests.flows.test_cli_run import promptdag

SPEC = """name: History {n}
config: {{breadth: 2, model: "simulated:history", model_options: {{latency_s: 0.3}}}}
tasks:
  - {{name: A{n}, prompt: a, depends_on: []}}
  - {{name: B{n}, prompt: b, depends_on: []}}
  - {{name: C{n}, prompt: c, depends_on: [A{n}, B{n}]}}
"""


def test_validate_history_uses_the_median_of_past_runs(prefect_api: str, tmp_path: Path) -> None:
    for n in range(2):  # 6 task runs of the model
        spec = tmp_path / f"run{n}.yaml"
        spec.write_text(SPEC.format(n=n))
        done = promptdag(prefect_api, tmp_path, "run", str(spec), "--quiet")
        assert done.returncode == 0, done.stderr
    offline = promptdag(prefect_api, tmp_path, "validate", str(spec))
    assert "simulated:history 0.30 s (option)" in offline.stdout
    assert "estimated time: 0.60 s at breadth 2 (sequential 0.90 s, 1.5x speedup)" in (
        offline.stdout)
    online = promptdag(prefect_api, tmp_path, "validate", str(spec), "--history")
    assert online.returncode == 0, online.stderr
    found = re.search(r"simulated:history (\d\.\d\d) s \(history, median of (\d+) runs\)",
                      online.stdout)
    assert found, online.stdout
    assert float(found.group(1)) >= 0.3 and int(found.group(2)) == 6


async def test_a_workflow_report_shows_the_estimate_beside_the_time_taken() -> None:
    from prefect.artifacts import Artifact

    from promptdag.api import arun

    result = await arun({"name": "Estimated Run", "config": {
        "breadth": 2, "model_options": {"latency_s": 0.2}},
        "tasks": [{"name": n, "prompt": n, "depends_on": []} for n in "abc"]})
    assert result.status == "completed"
    report = await Artifact.aget("workflow-estimated-run-report")
    assert report is not None
    assert "Before it ran, estimated time: 0.40 s at breadth 2 (sequential 0.60 s, 1.5x " \
        "speedup); latency per call: simulated 0.20 s (option)." in str(report.data)
