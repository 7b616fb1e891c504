"""A deployment run reads provider settings where its worker runs it. A worker without them
fails the run at its start, with what is missing (a base URL is not a key) and how a worker gets
it; the submitting shell needs no key, and `submit --wait` exits 1 for the failed run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deployments.conftest import Server

pytestmark = pytest.mark.deployments

LOCAL_MODEL = """name: Local model
tasks:
  - {name: Answer, prompt: Say hi, model: "openai:smollm2", model_options: {max_tokens: 8}}
"""


@pytest.mark.skipif(bool(os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")),
                    reason="this environment (and so the test worker) has OpenAI settings")
def test_a_worker_without_provider_settings_fails_the_run_naming_what_is_missing(
        deployed: Server, tmp_path: Path):
    spec = tmp_path / "local.yaml"
    spec.write_text(LOCAL_MODEL)
    done = deployed.promptdag("submit", str(spec), "--wait", timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr  # a failed run, not bad input
    error = done.stderr
    assert "model 'openai:smollm2' has no base URL: set OPENAI_BASE_URL" in error, error
    assert "needs an API key" not in error
    assert "job_variables env" in error and "Secret blocks" in error
