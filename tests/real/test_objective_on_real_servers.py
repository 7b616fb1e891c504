"""The objective on both real servers in shared/llm (llama.cpp's and llama-cpp-python's, the
same small model): the planner's schema compiles on both, the plan streams, and the objective
ends with a final answer. Depth 1 and tiny answers keep each run to a minute or two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.real.conftest import LlamaCppPythonServer, LlamaServer


def objective(server: LlamaServer, prefect_api: str, tmp_path: Path) -> dict[str, Any]:
    """`promptdag objective` against `server`, as a user runs it; the result JSON."""
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "context": {"focus_areas": ["diagnosis", "scheduling"]},
        "config": {"depth": 1, "max_tasks": 3, "breadth": 3, "max_retries": 1,
                   "retry_backoff_seconds": 0},
    }))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OPENAI_API_KEY": "sk-local",
           "OPENAI_BASE_URL": server.base_url}
    done = subprocess.run(
        [sys.executable, "-m", "promptdag.cli", "objective", "Name two uses of AI in hospitals",
         "--request", str(request), "--model", server.model, "--max-tokens", "24",
         "--temperature", "0", "--json", "--fresh"],
        capture_output=True, text=True, env=env, timeout=400,
    )
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    why = (result.get("stop_reason"), result.get("error"), done.stderr[-2000:])
    assert done.returncode == 0, why
    assert result["final_answer"], result
    return result


def test_the_streamed_objective_on_llama_cpp_starts_a_task_before_the_plan_is_written(
    llama_server: LlamaServer, prefect_api: str, tmp_path: Path
):
    result = objective(llama_server, prefect_api, tmp_path)
    assert result["plan_streamed"], result
    assert result["planning_started_at"] < result["first_task_started_at"]
    assert result["first_task_started_at"] < result["planning_finished_at"], (
        [t["name"] for t in result["rounds"][0]["plan"]["tasks"]])
    tasks = result["rounds"][0]["result"]["tasks"]
    assert all(t["usage"]["output_tokens"] <= 24 for t in tasks)  # --max-tokens held


def test_the_objective_on_llama_cpp_python_ends_with_a_final_answer(
    llama_cpp_python_server: LlamaCppPythonServer, prefect_api: str, tmp_path: Path
):
    """Its grammar compiler takes the planner's schema (no long string bounds), and its
    `json_schema` refusal steps down to JSON mode with the schema, not to an outage."""
    result = objective(llama_cpp_python_server, prefect_api, tmp_path)
    assert result["stop_reason"] in {"complete", "depth_reached", "reflection_failed"}
    assert result["rounds"] and result["rounds"][0]["result"]["tasks"]
    assert result["usage"]["output_tokens"] > 0
