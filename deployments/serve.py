"""Serve prefect.yaml's deployments from this process: no work pool, no worker.

    python -m promptdag.deployments.serve                  # every deployment in prefect.yaml
    python -m promptdag.deployments.serve objective        # only these (by deployment name)

The declarations are read from prefect.yaml with Prefect's own model of that file and its own
schedule conversion, so `serve` and `prefect deploy` cannot drift apart; only the work pool
and the pull steps are dropped (this process runs the flows itself). Serving and deploying
register the same deployment names, so use one or the other against a server. Stop with
Ctrl-C or SIGTERM; schedules are paused on the way out (Prefect's default for `serve`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"


def load_declarations(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The deployments of prefect.yaml as Prefect's `prefect deploy` reads them.

    Unlike `prefect deploy`, which skips an invalid file with a warning, an invalid file
    raises here (ValueError naming the problem).
    """
    from pydantic import ValidationError

    from promptdag._prefect_compat import prefect_yaml_deployments

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return prefect_yaml_deployments(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: not a valid prefect.yaml: {exc}") from None


def to_runner_deployment(declaration: dict[str, Any], root: Path = ROOT) -> RunnerDeployment:
    """One prefect.yaml deployment as a `RunnerDeployment` for `serve`."""
    from prefect.flows import load_flow_from_entrypoint

    from promptdag._prefect_compat import deployment_schedule

    entrypoint = declaration["entrypoint"]
    path, _, function = entrypoint.partition(":")
    flow: Flow[..., Any] = load_flow_from_entrypoint(f"{root / path}:{function}")
    schedules = [deployment_schedule(s) for s in declaration.get("schedules") or []]
    # to_deployment dispatches on the event loop: called here, without one, it returns the value
    deployment = cast("RunnerDeployment", flow.to_deployment(
        name=declaration["name"],
        description=declaration.get("description"),
        version=declaration.get("version"),
        tags=list(declaration.get("tags") or []),
        parameters=declaration.get("parameters") or {},
        schedules=schedules or None,
        concurrency_limit=declaration.get("concurrency_limit"),
        enforce_parameter_schema=declaration.get("enforce_parameter_schema", True),
    ))
    deployment.entrypoint = entrypoint  # relative to the repository, like prefect deploy's
    return deployment


def runner_deployments(
    names: Sequence[str] = (), path: Path = PREFECT_YAML
) -> list[RunnerDeployment]:
    declarations = load_declarations(path)
    known = [d["name"] for d in declarations]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"no deployment named {unknown[0]!r} in {path}; "
                         f"known: {', '.join(known)}")
    return [to_runner_deployment(d, path.parent) for d in declarations
            if not names or d["name"] in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m promptdag.deployments.serve",
        description="Serve prefect.yaml's deployments.",
    )
    parser.add_argument("names", nargs="*", help="deployment names (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="max concurrent flow runs")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from promptdag.deployments.crash_detection import HEARTBEAT_SECONDS, ensure_crash_detection

    # As prefect.yaml's job variables: heartbeats the crash detection can rely on.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    os.chdir(ROOT)  # flow runs start from the entrypoints, relative to the repository
    try:
        deployments = runner_deployments(args.names)
    except (OSError, ValueError) as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    from prefect import serve

    ensure_crash_detection()
    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
