"""The DAG shapes the scheduling benchmark runs, each a real workflow spec with simulated latencies.

Every shape is a `WorkflowSpec` (so promptdag runs exactly what the reference executors run);
`Plan` is the resolved view the references and the exact computations use: dependencies come
from promptdag's own graph code, latencies from each task's `model_options.latency_s`.
Random shapes are seeded, so every run and every machine sees the same DAGs.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from promptdag.spec.graph import build_graph
from promptdag.spec.models import WorkflowSpec, parse_spec


@dataclass(frozen=True)
class Plan:
    """A shape resolved for scheduling: names in declaration order, deps, latency, priority."""

    name: str
    breadth: int
    names: tuple[str, ...]
    depends_on: dict[str, tuple[str, ...]]
    dependents: dict[str, tuple[str, ...]]
    latency: dict[str, float]
    priority: dict[str, int]
    topological: tuple[str, ...]

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def levels(self) -> list[list[str]]:
        """Tasks by longest distance from a root (the stages a barrier executor runs)."""
        level: dict[str, int] = {}
        for name in self.topological:
            level[name] = max((level[d] + 1 for d in self.depends_on[name]), default=0)
        grouped: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in self.names:
            grouped[level[name]].append(name)
        return grouped


@dataclass(frozen=True)
class Shape:
    """A named benchmark DAG: the spec promptdag runs and what it is meant to show."""

    name: str
    why: str
    spec: WorkflowSpec
    max_repeats: int = 3

    def fresh_spec(self) -> WorkflowSpec:
        """The spec under a name no run has used: results of earlier runs (the engine reuses
        finished work on resume) can never stand in for a measured run."""
        return fresh(self.spec)

    def plan(self) -> Plan:
        graph = build_graph(self.spec)
        latency = {t.name: float(t.model_options.get("latency_s", 0.0)) for t in self.spec.tasks}
        return Plan(
            name=self.name,
            breadth=self.spec.config.breadth,
            names=graph.names,
            depends_on=dict(graph.depends_on),
            dependents=dict(graph.dependents),
            latency=latency,
            priority=dict(graph.priority),
            topological=tuple(graph.topological_order()),
        )


def fresh(spec: WorkflowSpec) -> WorkflowSpec:
    """`spec` renamed with a unique suffix (see `Shape.fresh_spec`)."""
    return spec.model_copy(update={"name": f"{spec.name} #{uuid.uuid4().hex[:10]}"})


def sim_task(name: str, latency: float, deps: list[str] | None, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": name,
        "prompt": f"Work on {name}",
        "model_options": {"latency_s": round(latency, 4)},
        **fields,
    }
    if deps is not None:
        task["depends_on"] = deps
    return task


def make_shape(
    name: str, why: str, breadth: int, tasks: list[dict[str, Any]], max_repeats: int = 3
) -> Shape:
    spec = parse_spec(
        {
            "name": f"bench {name}",
            "config": {"breadth": breadth, "retry_backoff_seconds": 0, "max_retries": 0},
            "tasks": tasks,
        }
    )
    return Shape(name=name, why=why, spec=spec, max_repeats=max_repeats)


def fan_out(width: int, scale: float, seed: int = 1, breadth: int = 8) -> Shape:
    """One root, `width` independent children of mixed latency, one join."""
    rng = random.Random(seed)
    children = [f"child {i}" for i in range(width)]
    tasks = [sim_task("root", 0.5 * scale, [])]
    tasks += [sim_task(c, rng.uniform(0.2, 2.0) * scale, ["root"]) for c in children]
    tasks.append(sim_task("join", 0.5 * scale, children))
    return make_shape(f"fan-out {width}", "wide fan-out under a small breadth", breadth, tasks)


def skewed_chains(chains: int, length: int, scale: float) -> Shape:
    """Parallel chains whose slow links alternate, so every stage holds one slow task."""
    tasks = []
    for c in range(chains):
        for k in range(length):
            slow = (k + c) % 2 == 0
            deps = [f"c{c}.{k - 1}"] if k else []
            tasks.append(sim_task(f"c{c}.{k}", (2.0 if slow else 0.2) * scale, deps))
    return make_shape(
        f"skewed chains {chains}x{length}",
        "a stage barrier waits for the slow link of every stage",
        chains,
        tasks,
    )


def long_root_first(dependents: int, roots: int, scale: float, breadth: int = 4) -> Shape:
    """A long root declared first, its dependents next, independent roots after them."""
    tasks = [sim_task("long root", 2.0 * scale, [])]
    tasks += [sim_task(f"after root {i}", 0.5 * scale, ["long root"]) for i in range(dependents)]
    tasks += [sim_task(f"independent {i}", 0.5 * scale, []) for i in range(roots)]
    return make_shape(
        "long root first",
        "tasks declared before they are ready must not hold slots",
        breadth,
        tasks,
    )


def random_dag(n: int, scale: float, seed: int, breadth: int, depth: int) -> Shape:
    """A seeded layered DAG: 1-3 edges from the layer above, a few long edges, latencies
    0.2-2 s, declared in a random valid order (not level by level)."""
    rng = random.Random(seed)
    # Every layer gets at least one task, so the DAG really is `depth` layers deep.
    layer_of = sorted([rng.randrange(depth) for _ in range(n - depth)] + list(range(depth)))
    names = [f"r{i}" for i in range(n)]
    by_layer: dict[int, list[str]] = {}
    for name, layer in zip(names, layer_of, strict=True):
        by_layer.setdefault(layer, []).append(name)
    deps: dict[str, list[str]] = {}
    for name, layer in zip(names, layer_of, strict=True):
        above = by_layer.get(layer - 1, [])
        chosen = set(rng.sample(above, min(len(above), rng.randint(1, 3)))) if above else set()
        if layer > 1 and rng.random() < 0.2:
            chosen.add(rng.choice(by_layer[rng.randrange(layer - 1)]))
        deps[name] = sorted(chosen)
    order = _random_topological(names, deps, rng)
    latency = {name: rng.uniform(0.2, 2.0) * scale for name in names}
    tasks = [sim_task(name, latency[name], deps[name]) for name in order]
    # Random DAGs run once even in the full benchmark: many tasks already average the noise,
    # and each run (with its server drain) takes minutes.
    return make_shape(f"random {n}", f"seeded random DAG ({depth} layers)", breadth, tasks, 1)


def _random_topological(
    names: list[str], deps: dict[str, list[str]], rng: random.Random
) -> list[str]:
    waiting = {name: len(deps[name]) for name in names}
    children: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in deps[name]:
            children[dep].append(name)
    ready = [name for name in names if not waiting[name]]
    order: list[str] = []
    while ready:
        name = ready.pop(rng.randrange(len(ready)))
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if not waiting[child]:
                ready.append(child)
    return order


def seed_cities(scale: float, seed: int = 2) -> Shape:
    """Seed 002's plan: 10 city researches (one straggler), then analysis, then report, with
    the seed's stage rule (task_type) and its breadth of 10; the seed's seconds / 20."""
    rng = random.Random(seed)
    cities = [rng.uniform(0.8, 1.1) for _ in range(9)] + [1.25]  # 20 s each, a 25 s straggler
    tasks = [
        sim_task(f"Research city {i + 1}", latency * scale, None, task_type="parallel")
        for i, latency in enumerate(cities)
    ]
    tasks.append(sim_task("Analysis", 1.5 * scale, None))
    tasks.append(sim_task("Report", 1.5 * scale, None))
    return make_shape("seed 10 cities", "seed 002: 10 cities + analysis + report", 10, tasks)


def independent(n: int, breadth: int = 16) -> Shape:
    """N independent zero-latency tasks: a run of it is orchestration only."""
    tasks = [sim_task(f"t{i}", 0.0, []) for i in range(n)]
    return make_shape(f"{n} zero-latency", "orchestration only", breadth, tasks)


def suite(mode: str) -> list[Shape]:
    """The shapes of a benchmark run: `full` at real latencies (0.2-2 s), `quick` and `smoke`
    smaller and with latencies scaled down to fit their time budget."""
    if mode == "full":
        return [
            fan_out(40, 1.0),
            skewed_chains(4, 6, 1.0),
            long_root_first(8, 12, 1.0),
            seed_cities(1.0),
            random_dag(50, 1.0, seed=50, breadth=8, depth=6),
            random_dag(200, 1.0, seed=200, breadth=16, depth=10),
            random_dag(1000, 1.0, seed=1000, breadth=96, depth=8),
        ]
    if mode == "quick":
        return [
            fan_out(20, 0.25),
            skewed_chains(4, 6, 0.25),
            long_root_first(8, 12, 0.25),
            seed_cities(0.25),
            random_dag(50, 0.25, seed=50, breadth=8, depth=6),
        ]
    if mode == "smoke":
        return [
            fan_out(6, 0.1, breadth=3),
            long_root_first(3, 4, 0.1, breadth=2),
            random_dag(20, 0.1, seed=20, breadth=4, depth=4),
        ]
    raise ValueError(f"unknown mode {mode!r}; expected full, quick or smoke")
