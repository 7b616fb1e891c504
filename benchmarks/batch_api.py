"""`python -m benchmarks.batch_api [ROWS]`: a batch run per call and through the Batch API.

The same 2-level workflow over ROWS rows (default 100) on `openai:gpt-4o-mini`, against the
loopback server of tests/providers/batch_servers.py (answers at once, batches end after three
polls): once per call, once with `batch_api: true`. Prints, for each: HTTP requests made,
batches, cost (the provider's usage at list or batch price) and wall time. The loopback answers
at once, so the wall time is promptdag's own cost of each path, not a provider's latency.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from tests.providers.batch_servers import OpenAIBatchServer

KEY = "sk-bench-batch-api"


def spec(batch_api: bool) -> dict[str, Any]:
    return {
        "name": f"bench batch_api={batch_api}",
        "config": {"model": "openai:gpt-4o-mini", "batch_api": batch_api, "breadth": 8,
                   "reuse_results": False, "model_options": {"max_tokens": 16}},
        "tasks": [{"name": "Read", "prompt": "Read {{ doc }}"},
                  {"name": "Title", "prompt": "Title for: {{ Read }}"}],
    }


async def measure(rows: int) -> list[str]:
    from promptdag.api import arun

    data = [{"id": f"r{i}", "doc": f"document {i}"} for i in range(rows)]
    lines = ["| path | rows | tasks | HTTP requests | batches | cost USD | wall s |",
             "|---|---|---|---|---|---|---|"]
    for batch_api in (False, True):
        server = OpenAIBatchServer(KEY).start()
        os.environ["OPENAI_BASE_URL"] = f"{server.url}/v1"
        try:
            clock = time.perf_counter()
            result = await arun(spec(batch_api), data=data)
            wall = time.perf_counter() - clock
        finally:
            server.stop()
        assert result.status == "completed", result.summary
        polls = sum(b.polls for b in server.batches.values())
        requests = len(server.direct) + polls + 3 * len(server.batches)  # upload, create, fetch
        lines.append(f"| {'batch API' if batch_api else 'per call'} | {rows} | "
                     f"{len(result.tasks)} | {requests} | {len(server.batches)} | "
                     f"{result.usage.cost_usd:.6f} | {wall:.1f} |")
    return lines


def main() -> None:
    """Against a temporary Prefect API of its own (as the tests run), stopped at the end."""
    from prefect.testing.utilities import prefect_test_harness

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    os.environ.update({"OPENAI_API_KEY": KEY, "PROMPTDAG_BATCH_POLL_SECONDS": "0.05"})
    with prefect_test_harness(server_startup_timeout=180):
        print("\n".join(asyncio.run(measure(rows))))


if __name__ == "__main__":
    main()
