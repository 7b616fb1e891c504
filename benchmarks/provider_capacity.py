"""Does promptdag keep a real server's slots as busy as a plain client does?

The same 40 calls against llama.cpp's server (4 slots, `../shared/llm`), side by side in one
run: a plain `AsyncOpenAI` script at 4 and at 8 requests in flight, and promptdag with the same
in-flight caps (an endpoint `capacity` of 4, the server's `/props` total_slots, or 8 by setting;
breadth above it, so a task's Prefect bookkeeping overlaps other tasks' calls) as a 40-task spec
and as a 40-row batch. Every answer is exactly `max_tokens` long (`ignore_eos`), so each mode
asks the server for the same work.

Measured from the server's side: a poller reads `GET /slots` every 20 ms; the makespan is from
the first sample with a busy slot to the last, the busy share is the mean number of busy slots
over that time divided by the slots. The server's own log (timestamped) says how long each call
kept its slot busy and how long a slot stayed idle between one call's release and the next
call's launch. The first moves with the machine's load (the server shares its 2 cores). The
second is mostly the server's own: a request that arrives while the server runs a batch step
waits for that step to end (60-300 ms here, with the load); the client's part (reading the
answer, sending the next request) is a few ms to a few tens of ms.

A shared machine's load changes from one run to the next, so every round runs all six modes,
in an order rotated each round, and the ratio is the median over rounds of each promptdag run's
makespan over the plain client's in the same round at the same in-flight cap.

    PYTHONPATH=$PWD python -m benchmarks.provider_capacity [--calls 40] [--max-tokens 24]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import machine_line

LLM_DIR = Path(os.environ.get("PROMPTDAG_TEST_LLM_DIR") or
               Path(__file__).resolve().parents[1].parent / "shared" / "llm")
POLL_SECONDS = 0.02
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("plain AsyncOpenAI", "promptdag spec", "promptdag batch")


@dataclass
class Figures:
    mode: str
    in_flight: int
    round: int
    makespan: float
    busy_share: float
    wall: float
    busy_per_call: float | None  # s a call held its slot, by the server's log
    idle_per_handoff: float | None  # s a slot stayed idle between two calls, by the server's log


class ServerLog:
    """The llama.cpp server's log, read from where the last run left it: when each slot
    launched and released a call (timestamps from `LLAMA_ARG_LOG_TIMESTAMPS`)."""

    LINE = re.compile(r"(\d+)\.(\d+)\.(\d+)\.(\d+) I slot\s+(launch_slot_|release): id\s+(\d+)")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def figures(self) -> tuple[float | None, float | None]:
        """(mean seconds a call held its slot, mean seconds a slot idled between two calls)."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        launched: dict[int, float] = {}
        released: dict[int, float] = {}
        busy: list[float] = []
        idle: list[float] = []
        for m in self.LINE.finditer(text):
            minutes, seconds, ms, us = (int(g) for g in m.groups()[:4])
            at, slot = minutes * 60 + seconds + ms / 1e3 + us / 1e6, int(m.group(6))
            if m.group(5) == "launch_slot_":
                if slot in released:
                    idle.append(at - released.pop(slot))
                launched[slot] = at
            elif slot in launched:
                busy.append(at - launched.pop(slot))
                released[slot] = at
        return (statistics.mean(busy) if busy else None,
                statistics.mean(idle) if idle else None)


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
            try:
                self.samples.append((time.monotonic(), self._busy()))
            except OSError:  # a sample the busy server did not answer in time: skipped
                pass
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


async def measure(
    root: str, log: ServerLog, mode: str, in_flight: int, round_: int, run: Any
) -> Figures:
    log.mark()
    poller = SlotPoller(root)
    poller.start()
    started = time.perf_counter()
    await run
    wall = time.perf_counter() - started
    poller.stop()
    makespan, share = poller.figures(4)
    return Figures(mode, in_flight, round_, makespan, share, wall, *log.figures())


async def main_async(args: argparse.Namespace, base_url: str, log: ServerLog) -> list[Figures]:
    root = base_url.removesuffix("/v1")
    os.environ["OPENAI_BASE_URL"] = base_url
    os.environ["OPENAI_API_KEY"] = "none"
    os.environ["PROMPTDAG_ARTIFACTS"] = "false"
    figures: list[Figures] = []
    # Warm-up: the SDKs imported and the Prefect API up before anything is measured.
    await plain(base_url, 4, 4, 4)
    await via_promptdag(2, 2, 4, batch=False)
    for round_ in range(args.rounds):
        for in_flight in (4, 8):
            # capacity 4 comes from /props; 8 is set, for the same cap as the plain client's.
            limits = {} if in_flight == 4 else {base_url: {"capacity": 8}}
            os.environ["PROMPTDAG_PROVIDER_LIMITS"] = json.dumps(limits)
            turn = round_ % len(MODES)  # rotated: no mode always runs after the same one
            for mode in MODES[turn:] + MODES[:turn]:
                if mode == MODES[0]:
                    run = plain(base_url, args.calls, in_flight, args.max_tokens)
                else:
                    run = via_promptdag(args.calls, in_flight * 2, args.max_tokens,
                                        batch=mode == MODES[2])
                figures.append(await measure(root, log, mode, in_flight, round_, run))
    return figures


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}"


def report(figures: list[Figures]) -> str:
    """Medians over rounds; the ratio is the median of the rounds' own ratios."""
    lines = ["| mode | in flight | makespan (s) | vs plain (rounds) | slot busy share | "
             "slot held per call (ms) | slot idle per handoff (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    plain_of = {(f.in_flight, f.round): f.makespan for f in figures if f.mode == MODES[0]}
    for in_flight in (4, 8):
        for mode in MODES:
            runs = [f for f in figures if f.mode == mode and f.in_flight == in_flight]
            if not runs:
                continue
            ratios = sorted(f.makespan / plain_of[(in_flight, f.round)] for f in runs)
            held = [f.busy_per_call for f in runs if f.busy_per_call is not None]
            idle = [f.idle_per_handoff for f in runs if f.idle_per_handoff is not None]
            lines.append(
                f"| {mode} | {in_flight} | {statistics.median(f.makespan for f in runs):.2f} | "
                f"{statistics.median(ratios):.3f}x ({', '.join(f'{r:.2f}' for r in ratios)}) | "
                f"{statistics.median(f.busy_share for f in runs):.0%} | "
                f"{_ms(statistics.median(held) if held else None)} | "
                f"{_ms(statistics.median(idle) if idle else None)} |")
    return "\n".join(lines)


def start_server(port: int) -> tuple[str, Path]:
    run_dir = Path(tempfile.mkdtemp(prefix="capacity-bench-"))
    env = {**os.environ, "TMPDIR": str(run_dir),  # a timestamped log: ServerLog reads it
           "LLAMA_ARG_LOG_TIMESTAMPS": "1", "LLAMA_ARG_LOG_PREFIX": "1"}
    out = subprocess.run([str(LLM_DIR / "start.sh"), str(port)], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip(), run_dir / f"llama-server-{port}.pid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all six modes")
    parser.add_argument("--port", type=int, default=8477)
    args = parser.parse_args()
    if not (LLM_DIR / "start.sh").exists():
        sys.exit(f"no llama.cpp server in {LLM_DIR}: set PROMPTDAG_TEST_LLM_DIR")
    load = os.getloadavg()[0]
    base_url, pid_file = start_server(args.port)
    try:
        log = ServerLog(pid_file.parent / f"llama-server-{args.port}.log")
        figures = asyncio.run(main_async(args, base_url, log))
    finally:
        os.kill(int(pid_file.read_text()), 15)
    text = (f"{report(figures)}\n\n{args.calls} calls of {args.max_tokens} tokens to llama.cpp "
            f"(4 slots), medians of {args.rounds} rounds; load average {load:.2f} at the "
            f"start. {machine_line()}\n")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "provider-capacity-latest.md").write_text(text)


if __name__ == "__main__":
    main()
