"""Deployment steps of prefect.yaml that Prefect does not ship."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout_directory() -> dict[str, str]:
    """`prefect deploy` build step: the directory deployment runs start in.

    It is this checkout (prefect.yaml's directory, where the flows' entrypoints are), found
    from where this code is, not from `$PWD`: a script that changes directory without updating
    PWD deployed runs that all crashed at once. Use its output in a pull step as
    `{{ checkout.directory }}` (with `id: checkout`).
    """
    return {"directory": str(ROOT)}


def crash_detection() -> dict[str, str]:
    """`prefect deploy` build step: the automation that marks a deployment run Crashed when its
    heartbeats stop (a killed worker), on the server being deployed to (created once)."""
    from promptdag.deployments.crash_detection import AUTOMATION, ensure_crash_detection

    ensure_crash_detection()
    return {"automation": AUTOMATION}
