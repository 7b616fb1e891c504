"""The Prefect UI, in headless Chromium: a deployed run's page shows its task runs and report.

Skipped, with the reason, where Chromium is not installed (`.ci/run` installs Debian's
`chromium`). The screenshots stay in tests/deployments/artifacts/ (gitignored).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from promptdag.remote import client
from tests.deployments.browser import Browser, find_chromium
from tests.deployments.conftest import ARTIFACTS, Server

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.deployments,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                       "(apt-get install -y chromium; .ci/run does it)"),
]

SPEC = {
    "name": "UI Check",
    "config": {"breadth": 2, "retry_backoff_seconds": 0},
    "tasks": [
        {"name": "Survey the field", "prompt": "Survey ocean energy"},
        {"name": "Weigh the options", "prompt": "Weigh {{ Survey the field }}"},
        {"name": "Write the memo", "prompt": "Write a memo from {{ Weigh the options }}"},
    ],
}


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    chromium = Browser(CHROMIUM)
    try:
        yield chromium
    finally:
        chromium.close()


def test_the_flow_run_page_shows_task_runs_and_the_report(browser: Browser, deployed: Server):
    run_id = client.submit_workflow(SPEC)
    result = client.wait_for_result(run_id, timeout=240, poll_seconds=0.25)
    assert result.status == "completed"
    url = client.ui_url(run_id)
    assert url is not None and url.startswith(deployed.info.url)

    browser.open(url)
    browser.wait_for_text("UI Check", "Task Runs", "Artifacts", "workflow:UI Check")
    browser.click_text("Task Runs")
    browser.wait_for_text(*(t["name"] for t in SPEC["tasks"]))

    browser.click_text("Artifacts")
    browser.wait_for_text("workflow-report", "workflow-tasks", "workflow-dag",
                          "workflow-progress", "3 of 3 tasks finished")
    shot = browser.screenshot(ARTIFACTS / "flow-run-page.png")

    browser.click_text("workflow-report")  # the report artifact's own page, rendered
    memo = result.task("Write the memo").result or ""
    text = browser.wait_for_text("UI Check: completed", "3 of 3 tasks completed", "Results",
                                 "Write the memo", memo[:40])
    assert "```" not in text  # Markdown rendered, not shown as source
    report = browser.screenshot(ARTIFACTS / "report-artifact.png")
    print(f"\nscreenshots: {shot} {report}")
