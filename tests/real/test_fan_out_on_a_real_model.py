"""Fan-out on a real model (llama.cpp's server): the outline's structured answer decides how
many research tasks run, and the writing task sees every one of their results, in order."""

from __future__ import annotations

import pytest

from promptdag.api import arun
from tests.real.conftest import LlamaServer


@pytest.fixture(autouse=True)
def _real_run_environment(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Prefect (the session's API) and a key for the OpenAI SDK (the server ignores it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-llama-server")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


async def test_a_real_outline_fans_out_into_one_research_task_per_section(
        llama_server: LlamaServer):
    outline_schema = {
        "type": "object",
        "properties": {"sections": {
            "type": "array", "minItems": 2, "maxItems": 4,
            "items": {"type": "string", "minLength": 1, "maxLength": 30}}},
        "required": ["sections"],
    }
    spec = {
        "name": "real fan-out",
        "config": {"model": llama_server.model, "breadth": 2, "retry_backoff_seconds": 0,
                   "model_options": llama_server.options(max_tokens=8)},
        "tasks": [
            {"name": "Outline", "prompt": "List the sections of a short report on tea.",
             "output_schema": outline_schema,
             "model_options": {"max_tokens": 96, "temperature": 0}},
            {"name": "Research", "for_each": "{{ Outline.sections }}",
             "prompt": "One fact about {{ item }}:"},
            {"name": "Write", "prompt": "Write the report from:\n{{ Research }}"},
        ],
    }
    result = await arun(spec)
    sections = (result.task("Outline").output or {}).get("sections")
    assert isinstance(sections, list) and 2 <= len(sections) <= 4, result.task("Outline")
    instances = [t for t in result.tasks if t.fan_out == "Research"]
    assert [(t.index, t.item, t.status) for t in instances] == [
        (i, s, "completed") for i, s in enumerate(sections)]
    assert all(t.prompt == f"One fact about {s}:" for t, s in zip(instances, sections,
                                                                 strict=True))
    write = result.task("Write")
    assert write.status == "completed" and result.status == "completed"
    joined = "\n\n".join(f"{i}. {t.result}" for i, t in enumerate(instances, 1))
    assert joined in (write.prompt or "")
    assert result.summary.fan_out_count == len(sections)
