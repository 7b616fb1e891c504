"""Workflows and objectives on a real model behind a real server (llama.cpp, SmolLM2-135M),
through real Prefect: what users meet that no fake shows (structured answers from a small model,
truncation, a 2,048-token context, a server that restarts)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptdag.api import arun
from promptdag.cli._common import render_summary
from promptdag.engine.events import TaskEvent, subscribe
from promptdag.spec.models import parse_spec
from promptdag.spec.template import render_task_prompt
from tests.real.conftest import LlamaServer

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(autouse=True)
def _real_run_environment(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Prefect (the session's API) and a key for the OpenAI SDK (the server ignores it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-llama-server")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def tokens(server: LlamaServer, text: str) -> int:
    """The real model's token count for `text` (llama.cpp's `POST /tokenize`)."""
    request = urllib.request.Request(
        f"{server.root}/tokenize",
        data=json.dumps({"content": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return len(json.loads(response.read())["tokens"])


async def test_the_adaptive_example_takes_the_branch_the_model_chose(llama_server: LlamaServer):
    data = yaml.safe_load((EXAMPLES / "adaptive_research.yaml").read_text())
    data["config"]["model"] = llama_server.model
    data["config"]["model_options"] = llama_server.options(max_tokens=32)  # no `outputs`
    result = await arun(parse_spec(data, base=EXAMPLES))

    label = (result.task("Assess").output or {}).get("label")
    assert label in {"simple", "moderate", "complex"}, result.task("Assess")
    branches = {
        "simple": "Quick answer",
        "moderate": "Focused research",
        "complex": "Deep research",
    }
    for value, task in branches.items():
        assert result.task(task).status == ("completed" if value == label else "skipped")
    assert result.task("Final answer").status == "completed"
    assert "[skipped" not in (result.task("Final answer").prompt or "")
    if label == "complex":  # the sub-workflow ran on the parent's model too
        deep = result.task("Deep research").workflow
        assert deep is not None and {t.model for t in deep.tasks} == {llama_server.model}


async def test_a_join_of_three_long_answers_fits_a_2048_token_context(
    llama_server: LlamaServer,
):
    n_ctx = llama_server.props()["default_generation_settings"]["n_ctx"]
    assert n_ctx == 2048
    long = llama_server.options(max_tokens=700, extra_body={"ignore_eos": True})
    spec = {
        "name": "long join",
        "config": {
            "model": llama_server.model,
            "breadth": 3,
            "model_options": llama_server.options(max_tokens=16),
        },
        "tasks": [
            *(
                {
                    "name": f"Essay {i}",
                    "prompt": f"Write a long essay about hospital {i}.",
                    "depends_on": [],
                    "model_options": long,
                }
                for i in (1, 2, 3)
            ),
            {
                "name": "Join",
                "prompt": "Summarise the essays in one sentence.",
                "depends_on": ["Essay 1", "Essay 2", "Essay 3"],
            },
        ],
    }
    result = await arun(spec)

    assert result.status == "completed", [t.error for t in result.tasks]
    essays = [result.task(f"Essay {i}") for i in (1, 2, 3)]
    assert all(e.truncated and e.finish_reason == "length" for e in essays)
    assert result.summary.truncated_count >= 3
    assert "truncated" in render_summary(result)
    whole = render_task_prompt(
        "Summarise the essays in one sentence.", {}, {e.name: e.result or "" for e in essays}, set()
    )
    assert tokens(llama_server, whole) > n_ctx  # as written, the join's prompt cannot fit
    join = result.task("Join").prompt or ""
    assert "cut to fit the model's context window" in join
    assert tokens(llama_server, join) < n_ctx


async def test_a_20_task_workflow_survives_the_server_restarting(llama_server: LlamaServer):
    spec = {
        "name": "restart",
        "config": {
            "model": llama_server.model,
            "breadth": 4,
            "max_retries": 0,
            "model_options": llama_server.options(max_tokens=8),
        },
        "tasks": [
            {"name": f"Step {i:02d}", "prompt": f"Say the number {i}.", "depends_on": []}
            for i in range(20)
        ],
    }
    restarted = threading.Event()

    def restart() -> None:
        llama_server.stop()
        time.sleep(3)
        llama_server.start()
        restarted.set()

    def on_event(event: TaskEvent) -> None:
        if event.kind == "finished" and event.finished_count == 2 and not restarted.is_set():
            threading.Thread(target=restart, daemon=True).start()

    unsubscribe = subscribe(on_event)
    try:
        result = await arun(spec)
    finally:
        unsubscribe()
    await asyncio.to_thread(restarted.wait, 60)
    assert restarted.is_set()
    # no retries were allowed: the calls made while it was down waited for it instead
    assert [t.status for t in result.tasks] == ["completed"] * 20, [t.error for t in result.tasks]
    assert all(t.attempts == 1 for t in result.tasks)


def test_an_objective_on_the_real_model_ends_with_a_final_answer(
    llama_server: LlamaServer, prefect_api: str, tmp_path: Path
):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"config": {"depth": 2, "max_tasks": 3}}))
    env: dict[str, Any] = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "OPENAI_BASE_URL": llama_server.base_url,
        "PROMPTDAG_DEFAULT_MAX_TOKENS": "48",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptdag.cli",
            "objective",
            "Name two uses of AI in hospitals",
            "--request",
            str(request),
            "--model",
            llama_server.model,
            "--json",
            "--fresh",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    why = (result.get("stop_reason"), result.get("error"), done.stderr[-2000:])
    assert done.returncode == 0, why
    assert result["final_answer"], result
    assert result["stop_reason"] in {"complete", "depth_reached", "reflection_failed"}
