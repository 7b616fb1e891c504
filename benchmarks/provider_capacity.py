"""Does promptdag keep a real server's slots as busy as a plain client does?

The same 40 calls against llama.cpp's server (4 slots, `../shared/llm`), side by side in one
run: a plain `AsyncOpenAI` script at 4 and at 8 requests in flight, and promptdag with the same
in-flight caps (an endpoint `capacity` of 4, the server's `/props` total_slots, or 8 by setting;
breadth above it, so a task's Prefect bookkeeping overlaps other tasks' calls) as a 40-task spec
and as a 40-row batch. Every answer is exactly `max_tokens` long (`ignore_eos`), so each mode
asks the server for the same work.

Measured from the server's side: a poller reads `GET /slots` every 20 ms; the makespan is from
the first sample with a busy slot to the last, the busy share is the mean number of busy slots
over that time divided by the slots. The ratio compares promptdag's makespan to the plain
client's at the same in-flight cap.

    PYTHONPATH=$PWD python -m benchmarks.provider_capacity [--calls 40] [--max-tokens 24]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LLM_DIR = Path(os.environ.get("PROMPTDAG_TEST_LLM_DIR") or
               Path(__file__).resolve().parents[1].parent / "shared" / "llm")
POLL_SECONDS = 0.02


@dataclass
class Figures:
    mode: str
    in_flight: int
    makespan: float
    busy_share: float
    wall: float


class SlotPoller:
    """Samples the server's busy slots on its own thread (never starved by the event loop the
    runs use) until stopped."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _busy(self) -> int:
        with urllib.request.urlopen(f"{self.root}/slots", timeout=2) as response:
            return sum(bool(s.get("is_processing")) for s in json.load(response))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._busy()))
            time.sleep(POLL_SECONDS)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, slots: int) -> tuple[float, float]:
        busy = [(t, n) for t, n in self.samples if n]
        if not busy:
            return 0.0, 0.0
        first, last = busy[0][0], busy[-1][0]
        window = [n for t, n in self.samples if first <= t <= last]
        return last - first, sum(window) / len(window) / slots


def prompts(calls: int) -> list[str]:
    return [f"Write one short sentence about the number {i}." for i in range(calls)]


async def plain(base_url: str, calls: int, in_flight: int, max_tokens: int) -> None:
    import openai

    client = openai.AsyncOpenAI(api_key="none", base_url=base_url, max_retries=0)
    gate = asyncio.Semaphore(in_flight)

    async def one(prompt: str) -> None:
        async with gate:
            await client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True},
            )

    await asyncio.gather(*(one(p) for p in prompts(calls)))
    await client.close()


def workflow(calls: int, breadth: int, max_tokens: int, batch: bool) -> dict[str, Any]:
    options = {"max_tokens": max_tokens, "temperature": 0, "extra_body": {"ignore_eos": True}}
    config = {"breadth": breadth, "model": "openai:smollm2", "model_options": options,
              "reuse_results": False}
    tasks: list[dict[str, Any]]
    if batch:
        tasks = [{"name": "ask", "prompt": "Write one short sentence about the number {{ n }}."}]
    else:
        # independent: without `depends_on`, each (sequential) task would wait for the last
        tasks = [{"name": f"t{i}", "prompt": p, "depends_on": []}
                 for i, p in enumerate(prompts(calls))]
    return {"name": "capacity-batch" if batch else "capacity-spec", "config": config,
            "tasks": tasks}


async def via_promptdag(calls: int, breadth: int, max_tokens: int, batch: bool) -> None:
    from promptdag.api import arun

    data = [{"id": str(i), "n": i} for i in range(calls)] if batch else None
    result = await arun(workflow(calls, breadth, max_tokens, batch), data=data)
    if result.status != "completed":
        raise SystemExit(f"promptdag run failed: {result.summary}")


async def measure(root: str, mode: str, in_flight: int, run: Any) -> Figures:
    poller = SlotPoller(root)
    poller.start()
    started = time.perf_counter()
    await run
    wall = time.perf_counter() - started
    poller.stop()
    makespan, share = poller.figures(4)
    return Figures(mode, in_flight, makespan, share, wall)


async def main_async(args: argparse.Namespace, base_url: str) -> list[Figures]:
    root = base_url.removesuffix("/v1")
    os.environ["OPENAI_BASE_URL"] = base_url
    os.environ["OPENAI_API_KEY"] = "none"
    os.environ["PROMPTDAG_ARTIFACTS"] = "false"
    figures: list[Figures] = []
    # Warm-up: the SDKs imported and the Prefect API up before anything is measured.
    await plain(base_url, 4, 4, 4)
    await via_promptdag(2, 2, 4, batch=False)
    for in_flight in (4, 8):
        # capacity 4 comes from /props; 8 is set, for the same cap as the plain client's.
        limits = {} if in_flight == 4 else {base_url: {"capacity": 8}}
        os.environ["PROMPTDAG_PROVIDER_LIMITS"] = json.dumps(limits)
        for _ in range(args.repeat):
            figures.append(await measure(root, "plain AsyncOpenAI", in_flight,
                                         plain(base_url, args.calls, in_flight, args.max_tokens)))
            figures.append(await measure(root, "promptdag spec", in_flight, via_promptdag(
                args.calls, in_flight * 2, args.max_tokens, batch=False)))
            figures.append(await measure(root, "promptdag batch", in_flight, via_promptdag(
                args.calls, in_flight * 2, args.max_tokens, batch=True)))
    return figures


def report(figures: list[Figures]) -> str:
    lines = ["| mode | in flight | makespan (s) | slot busy share | vs plain | wall (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    best: dict[tuple[str, int], Figures] = {}
    for f in figures:  # the best of the repeats for each mode
        key = (f.mode, f.in_flight)
        if key not in best or f.makespan < best[key].makespan:
            best[key] = f
    order = sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0] != "plain AsyncOpenAI"))
    for (mode, in_flight), f in order:
        base = best[("plain AsyncOpenAI", in_flight)].makespan
        lines.append(f"| {mode} | {in_flight} | {f.makespan:.2f} | {f.busy_share:.0%} | "
                     f"{f.makespan / base:.3f}x | {f.wall:.2f} |")
    return "\n".join(lines)


def start_server(port: int) -> tuple[str, Path]:
    run_dir = Path(tempfile.mkdtemp(prefix="capacity-bench-"))
    env = {**os.environ, "TMPDIR": str(run_dir)}
    out = subprocess.run([str(LLM_DIR / "start.sh"), str(port)], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip(), run_dir / f"llama-server-{port}.pid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=2, help="runs per mode (best kept)")
    parser.add_argument("--port", type=int, default=8477)
    args = parser.parse_args()
    if not (LLM_DIR / "start.sh").exists():
        sys.exit(f"no llama.cpp server in {LLM_DIR}: set PROMPTDAG_TEST_LLM_DIR")
    base_url, pid_file = start_server(args.port)
    try:
        figures = asyncio.run(main_async(args, base_url))
    finally:
        os.kill(int(pid_file.read_text()), 15)
    print(f"{args.calls} calls of {args.max_tokens} tokens, llama.cpp 4 slots "
          f"(best of {args.repeat}):")
    print(report(figures))


if __name__ == "__main__":
    main()
