"""WorkflowBuilder: the seed API's fluent way to write a spec in Python."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from promptdag.spec.models import TaskType, WorkflowSpec, parse_spec
from promptdag.spec.validation import validate_spec


class WorkflowBuilder:
    """Build a `WorkflowSpec` step by step; `build()` validates it like a spec file.

    Example:
        spec = (
            WorkflowBuilder("Research")
            .with_config(breadth=5)
            .add_task("initialize", "Initialize research on the topic")
            .add_parallel_tasks(
                [{"name": "a", "prompt": "Research A"}, {"name": "b", "prompt": "Research B"}],
                depends_on=["initialize"],
            )
            .add_task("synthesize", "Synthesize the findings", depends_on=["a", "b"])
            .build()
        )
    """

    def __init__(self, name: str, description: str | None = None) -> None:
        self._name = name
        self._description = description
        self._config: dict[str, Any] = {}
        self._tasks: list[dict[str, Any]] = []

    def with_config(self, **config: Any) -> WorkflowBuilder:
        """Set workflow config fields (breadth, timeout_seconds, failure_mode, model...)."""
        self._config.update(config)
        return self

    def add_task(
        self,
        name: str,
        prompt: str,
        task_type: TaskType | str = TaskType.SEQUENTIAL,
        depends_on: Iterable[str] | None = None,
        **fields: Any,
    ) -> WorkflowBuilder:
        """Add one task; other TaskSpec fields (priority, model, context...) as keywords."""
        task: dict[str, Any] = {"name": name, "prompt": prompt, "task_type": task_type, **fields}
        if depends_on is not None:
            task["depends_on"] = list(depends_on)
        self._tasks.append(task)
        return self

    def add_parallel_tasks(
        self,
        task_specs: Iterable[Mapping[str, Any]],
        depends_on: Iterable[str] | None = None,
    ) -> WorkflowBuilder:
        """Add tasks that may run side by side, each depending on `depends_on` (if given)."""
        deps = list(depends_on) if depends_on is not None else None
        for spec in task_specs:
            fields = {"task_type": TaskType.PARALLEL, **spec}
            if deps is not None and "depends_on" not in fields:
                fields["depends_on"] = deps
            self._tasks.append(fields)
        return self

    def build(self) -> WorkflowSpec:
        """The validated spec; raises SpecError like a bad spec file would."""
        spec = parse_spec(
            {
                "name": self._name,
                "description": self._description,
                "config": dict(self._config),
                "tasks": list(self._tasks),
            },
            source=f"workflow {self._name!r}",
        )
        validate_spec(spec)
        return spec
