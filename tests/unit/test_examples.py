"""Every file in examples/ is valid as it is: `promptdag validate` accepts each spec and
objective request, a batch spec with its rows (`--data`), and `graph` draws each batch spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptdag.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROWS = {"support_triage.yaml": EXAMPLES / "data" / "tickets.jsonl"}  # batch specs: their rows
FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json")
               and "data" not in p.relative_to(EXAMPLES).parts)


def test_the_examples_are_found():
    assert {p.name for p in FILES} >= {"seed_api_request.json", "support_triage.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_validates(path: Path, capsys: pytest.CaptureFixture[str]):
    data = ["--data", str(ROWS[path.name])] if path.name in ROWS else []
    assert main(["validate", str(path), *data]) == 0, capsys.readouterr().err
    assert "valid" in capsys.readouterr().out


def test_a_batch_spec_validates_every_row_and_draws_with_the_first_rows_fields(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    spec = EXAMPLES / "support_triage.yaml"
    rows = ROWS[spec.name]
    assert main(["validate", str(spec), "--data", str(rows)]) == 0
    count = len(rows.read_text().splitlines())
    assert f"all {count} rows checked" in capsys.readouterr().out
    assert main(["graph", str(spec), "--data", str(rows)]) == 0
    drawn = capsys.readouterr().out  # one row's instance, under the workflow's own names
    assert '"Classify"' in drawn and "T-100" not in drawn

    assert main(["validate", str(spec)]) == 2  # without rows: says how to give them
    assert "--data ROWS" in capsys.readouterr().err

    bad = tmp_path / "rows.jsonl"  # the second row lacks a field a prompt uses
    bad.write_text('{"customer": "a", "text": "t"}\n{"customer": "b"}\n')
    assert main(["validate", str(spec), "--data", str(bad)]) == 2
    assert "text" in capsys.readouterr().err
