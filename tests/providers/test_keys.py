"""Keys: a missing key is one line before anything starts; keys never reach a spec or a message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promptdag.errors import ConfigError, SpecError
from promptdag.llm.keys import scrub
from promptdag.llm.options import options_for
from promptdag.spec.models import parse_spec
from promptdag.spec.validation import validate_spec


def spec(model: object, **options: object) -> object:
    return parse_spec(
        {
            "name": "w",
            "config": {"model": model, "model_options": options},
            "tasks": [{"name": "Research", "prompt": "x"}],
        }
    )


@pytest.mark.parametrize(
    ("model", "variable"),
    [("openai:gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic:claude-haiku-4-5", "ANTHROPIC_API_KEY")],
)
def test_a_missing_key_is_one_clear_line(model: str, variable: str):
    with pytest.raises(ConfigError) as caught:
        validate_spec(spec(model))
    provider = model.split(":")[0].upper()
    assert str(caught.value) == (
        f"model {model!r} needs an API key: set {variable}, or name a Prefect Secret block in "
        f"PROMPTDAG_{provider}_API_KEY_SECRET"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("model", ["openai:smollm2", "openai:llama3.1", "anthropic:local"])
def test_a_model_of_a_server_of_ones_own_is_missing_its_base_url_not_a_key(model: str):
    with pytest.raises(ConfigError) as caught:
        validate_spec(spec(model))
    variable = f"{model.split(':')[0].upper()}_BASE_URL"
    assert str(caught.value).startswith(f"model {model!r} has no base URL: set {variable} (or")
    assert "needs an API key" not in str(caught.value)


def test_every_model_of_a_chain_needs_its_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(ConfigError, match="'anthropic:claude-haiku-4-5' needs an API key"):
        validate_spec(spec(["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"]))


def test_a_key_from_the_sdk_variable_a_secret_block_or_a_named_variable(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    validate_spec(spec("openai:gpt-4o-mini"))
    monkeypatch.setenv("PROMPTDAG_ANTHROPIC_API_KEY_SECRET", "anthropic-key")
    validate_spec(spec("anthropic:claude-haiku-4-5"))  # the block is read at the first call
    monkeypatch.setenv("VLLM_KEY", "abc")
    validate_spec(spec("openai:qwen", api_key_env="VLLM_KEY"))
    with pytest.raises(ConfigError, match=r"set NOPE \(named by the model's 'api_key_env'"):
        validate_spec(spec("openai:qwen", api_key_env="NOPE"))


def test_a_server_of_its_own_needs_no_key(monkeypatch):
    validate_spec(spec("openai:llama3.1", base_url="http://127.0.0.1:11434/v1"))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    validate_spec(spec("openai:qwen"))


def test_validate_and_graph_may_skip_the_key_check():
    validate_spec(spec("openai:gpt-4o-mini"), check_keys=False)


@pytest.mark.parametrize("name", ["api_key", "auth_token"])
def test_a_key_in_a_spec_is_refused(monkeypatch, name: str):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(SpecError, match="never put an API key in a spec"):
        validate_spec(spec("openai:gpt-4o-mini", **{name: "sk-live-123"}))


def test_option_typos_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(
        SpecError, match="unknown model option 'temprature'; did you mean 'temperature'"
    ):
        validate_spec(spec("openai:gpt-4o-mini", temprature=0.2))
    with pytest.raises(SpecError, match="openai model option 'temperature'"):
        validate_spec(spec("openai:gpt-4o-mini", temperature=7))
    # Options another provider understands are ignored, so one string switches the model.
    validate_spec(spec("openai:gpt-4o-mini", latency_s=0.1, top_k=5))


def test_options_scoped_to_one_model_of_a_chain():
    options = {"temperature": 0.2, "openai:llama3.1": {"base_url": "http://h/v1", "temperature": 0}}
    assert options_for("openai:llama3.1", options) == {"temperature": 0, "base_url": "http://h/v1"}
    assert options_for("openai:gpt-4o", options) == {"temperature": 0.2}
    with pytest.raises(SpecError, match="must be a mapping"):
        validate_spec(spec("simulated", **{"openai:x": 3}))


def test_scrub_removes_known_keys_and_key_shapes(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plain-looking-secret-value")
    text = "bad key plain-looking-secret-value or sk-proj-abcdef123456 or sk-ant-api03-zzzzzzzz"
    assert scrub(text) == "bad key *** or sk-proj-*** or sk-ant-***"


def test_the_cli_says_it_in_one_line_and_exits_2_before_prefect(tmp_path: Path):
    file = tmp_path / "w.yaml"
    file.write_text("name: w\nconfig: {model: openai:gpt-4o-mini}\ntasks: [{name: a, prompt: x}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "promptdag.cli", "run", str(file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "promptdag: error: model 'openai:gpt-4o-mini' needs an API key: set OPENAI_API_KEY, "
        "or name a Prefect Secret block in PROMPTDAG_OPENAI_API_KEY_SECRET\n"
    )
    assert done.stdout == ""


def test_validate_checks_the_spec_alone(tmp_path: Path):
    file = tmp_path / "w.yaml"
    file.write_text("name: w\nconfig: {model: openai:gpt-4o-mini}\ntasks: [{name: a, prompt: x}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "promptdag.cli", "validate", str(file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
