"""The README and docs/ say what the code does: a README a newcomer reads in five minutes, every
docs page linked from docs/index.md, every relative link resolving (anchors included), every
`promptdag` command shown parsing, the test command the one CI runs, and the README's command
table naming every command with the exit codes it documents (bad input: 2, checked here; the
exit 1 of a failed run is checked where runs are: tests/flows/test_cli_run.py,
tests/deployments/test_worker_provider_settings.py, tests/deployments/test_lost_worker.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from promptdag.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# Pages other branches write; until they are merged a link to one that is missing is skipped,
# so each branch is green on its own.
PENDING_PAGES: set[str] = set()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
RUN_ID = "0b6f4d2e-8a51-4c3e-9f8e-2d5b7c1a9e30"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines: move detail into docs/"


def test_the_readmes_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'")
    assert ci in README.read_text()


def test_docs_index_links_every_page():
    linked = {target.split("#")[0] for target in LINK.findall((DOCS / "index.md").read_text())}
    for page in DOCS.glob("*.md"):
        assert page.name == "index.md" or page.name in linked, f"docs/index.md misses {page.name}"
    assert "docs/index.md" in README.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() and file.name in PENDING_PAGES and file.parent == DOCS:
            continue
        assert file.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: no heading for #{anchor} in {file.name}"


def shown_commands(page: Path) -> list[list[str]]:
    """Every `promptdag ...` line of the page's shell blocks, as arguments."""
    found = []
    for language, block in FENCE.findall(page.read_text()):
        if language not in ("bash", "sh", ""):
            continue
        for line in block.splitlines():
            line = re.sub(r"^\s*\w+=\$\((.*)\)", r"\1", line.split(" #")[0]).strip()
            line = line.removesuffix("&").strip()
            if line.startswith("promptdag "):
                for command in line.split("&&"):
                    words = shlex.split(command.replace("$RUNS", RUN_ID).replace("$RUN", RUN_ID))
                    if words and words[0] == "promptdag":
                        found.append(words[1:])
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_parses(page: Path):
    parser = build_parser()
    for words in shown_commands(page):
        parser.parse_args(words)  # a wrong command or option exits 2 and fails the test
    for command in set(re.findall(r"`promptdag ([a-z]+)", page.read_text())):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([command, "--help"])
        assert done.value.code == 0, f"{page.name}: `promptdag {command}` is not a command"


def command_table() -> dict[str, set[int]]:
    """The README's command table: each command and the exit codes its rows document."""
    table: dict[str, set[int]] = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`promptdag "):
            command = cells[0].split()[1].rstrip("`")
            codes = {int(code) for code in re.findall(r"\b(\d+)\b", cells[2])}
            table.setdefault(command, set()).update(codes)
    return table


RUNS_THAT_CAN_FAIL = {"run", "objective", "retry", "submit", "result", "watch"}


def test_the_command_table_names_every_command_and_its_exit_codes():
    table = command_table()
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert set(table) == commands
    for command, codes in table.items():
        assert {0, 2} <= codes <= {0, 1, 2}, (command, codes)
        assert (1 in codes) == (command in RUNS_THAT_CAN_FAIL), command


BAD_INPUT = {  # one bad input per command, each found before any server is asked
    "run": ["run", "missing.yaml"],
    "validate": ["validate", "missing.yaml"],
    "graph": ["graph", "missing.yaml"],
    "objective": ["objective", "--request", "missing.json"],
    "submit": ["submit", "missing.yaml"],
}


@pytest.mark.parametrize("command", sorted(command_table()))
def test_each_command_exits_2_on_bad_input(command: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as usage:  # a usage error is bad input for every command
        main([command, "--no-such-option"])
    assert usage.value.code == 2
    if command in BAD_INPUT:
        assert main(BAD_INPUT[command]) == 2
        assert "missing" in capsys.readouterr().err
