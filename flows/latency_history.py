"""Per-model latencies from past runs, for estimates: the median duration of each model's task
runs, read from the task tables that runs publish as Prefect artifacts (`flows/artifacts.py`:
one row per task with its model, status and duration).

Reading them costs one API call, so it happens only where an API is cheap to reach: the
objective's plan review (inside a run, the API is there), and `promptdag validate --history`.
Only tasks that completed with a real call count (a reused result took no time). Prefect is
imported when called, never at import time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterable
from typing import Any

ARTIFACTS = 20  # the latest task tables read: recent enough, and one bounded request
MIN_SAMPLES = 3  # fewer runs than this of a model: its default or hint is as good a guess
TIMEOUT_SECONDS = 5.0  # an estimate never holds a run up longer than this


def medians(rows: Iterable[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """model -> (median seconds, samples) of completed, not reused task rows."""
    seconds: dict[str, list[float]] = {}
    for row in rows:
        duration = row.get("duration_s")
        if (row.get("status") == "completed" and not row.get("reused")
                and isinstance(duration, (int, float)) and isinstance(row.get("model"), str)):
            seconds.setdefault(row["model"], []).append(float(duration))
    return {model: (round(statistics.median(values), 3), len(values))
            for model, values in seconds.items() if len(values) >= MIN_SAMPLES}


def _rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return []
    if isinstance(data, list):
        return [row for row in data if isinstance(row, dict)]
    return []


async def amodel_latencies(limit: int = ARTIFACTS) -> dict[str, tuple[float, int]]:
    """Median task-run durations per model from the latest `limit` task tables; {} when the
    API cannot be read within `TIMEOUT_SECONDS` (an estimate never fails a run or a command,
    and an API going away, which Prefect's client retries for minutes, never holds one up)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["table"])),
                sort=ArtifactSort.CREATED_DESC,
                limit=limit,
            )

    try:
        artifacts = await asyncio.wait_for(read(), TIMEOUT_SECONDS)
    except Exception:
        return {}
    return medians(row for artifact in artifacts for row in _rows(artifact.data))


def model_latencies(limit: int = ARTIFACTS) -> dict[str, tuple[float, int]]:
    """Synchronous `amodel_latencies`."""
    return asyncio.run(amodel_latencies(limit))
