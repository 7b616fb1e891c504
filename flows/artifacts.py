"""What a run shows in the Prefect UI: tags, a live progress artifact, and at the end a report,
a task table and the DAG.

A flow opens a `RunView` for itself. The view tags the flow run with the workflow's name (the
task runs carry no tags of their own: the flow run's are enough, and cheaper), creates a
progress artifact and listens to the scheduler's `TaskEvent`s, keeping only those of
its own run and its subflows (a context variable marks them, so concurrent runs in one process
do not mix). Progress goes to the API at most every `PROGRESS_INTERVAL` seconds, from a
background task, so the scheduler never waits on the network. Structured counts ride along in
the artifact's metadata; `promptdag status` reads them back.

Artifact keys are stable, so the latest report of a deployment is one lookup:
`<deployment>-report` (also `-tasks`, `-dag`, `-progress`); a run outside a deployment uses
`workflow-<name>` or `objective-<text>`, and an objective's rounds `<objective key>-round`.
Nothing here may fail a run: API errors are logged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextvars import ContextVar, Token
from typing import Any
from uuid import UUID

from promptdag.engine.events import TaskEvent, subscribe
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.report import (
    mermaid_markdown,
    objective_report,
    objective_task_rows,
    progress_line,
    task_rows,
    workflow_report,
)
from promptdag.engine.results import WorkflowResult
from promptdag.settings import get_settings
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import WorkflowSpec

PROGRESS_INTERVAL = 0.5  # seconds between progress updates sent to the API
KEY_LIMIT = 60  # characters of the key's stem

# Metadata keys of the progress artifact (strings: Prefect keeps metadata as str -> str).
FINISHED, TOTAL, ROUND, DEPTH = "tasks_finished", "tasks_total", "current_depth", "max_depth"

_views: ContextVar[tuple[RunView, ...]] = ContextVar("promptdag_run_views", default=())
_log = logging.getLogger("promptdag.artifacts")


def slug(text: str, limit: int = KEY_LIMIT) -> str:
    """An artifact key stem: lowercase letters, digits and dashes (Prefect's rule)."""
    stem = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return stem[:limit].rstrip("-") or "run"


def workflow_tag(name: str) -> str:
    """The tag on a workflow's flow run (its task runs carry none: they would cost a
    concurrency-slot lookup each)."""
    return f"workflow:{name}"


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except Exception:
        return _log


class RunView:
    """The UI side of one flow run: tags, progress while it runs, artifacts when it ends."""

    def __init__(
        self,
        kind: str,
        label: str,
        total: int = 0,
        depth: int | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self.kind = kind  # "workflow" | "objective"
        self.label = label
        self.tags = tags or []
        self.depth = depth
        self.enabled = get_settings().artifacts
        self.key = ""
        self.flow_run_id: UUID | None = None
        self._finished: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._initial_total = total
        self._artifact_id: UUID | None = None
        self._last_push = 0.0
        self._pushing: asyncio.Task[None] | None = None
        self._sending = False  # an update is on the wire (see `_flush`)
        self._dirty = False
        self._unsubscribe: Any = None
        self._token: Token[tuple[RunView, ...]] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> RunView:
        """Tag the run (always), create the progress artifact and start listening."""
        self._token = _views.set((*_views.get(), self))
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            self.enabled = False
            return self
        self.flow_run_id = context.flow_run.id
        tags = context.flow_run.tags
        try:
            if self.enabled:
                self.key = await self._key_stem(context.flow_run.deployment_id)
                await asyncio.gather(self._add_tags(tags), self._create_progress())
            else:
                await self._add_tags(tags)
        except Exception as exc:
            _logger().warning("Tags or artifacts are off for this run: %s", exc)
            self.enabled = False
        if self.enabled:
            self._unsubscribe = subscribe(self._on_event)
        return self

    def close(self) -> None:
        """Stop listening (idempotent); `publish_*` sends the last progress update."""
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._token is not None:
            try:
                _views.reset(self._token)
            except ValueError:  # closed from another context: leave the variable alone
                pass
            self._token = None

    async def __aenter__(self) -> RunView:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # -- progress --------------------------------------------------------------------------

    def _on_event(self, event: TaskEvent) -> None:
        if self not in _views.get() or event.kind == "retrying":  # another run's; no count
            return
        self._totals[event.workflow] = event.total
        if event.kind == "finished":
            self._finished[event.workflow] = event.finished_count
        self._dirty = True
        if self._pushing is None and self._artifact_id is not None:
            self._pushing = asyncio.get_running_loop().create_task(self._push_progress())

    def counts(self) -> tuple[int, int]:
        finished = sum(self._finished.values())
        total = sum(self._totals.values()) or self._initial_total
        return finished, max(total, finished)

    def _progress_update(self) -> dict[str, Any]:
        finished, total = self.counts()
        rounds = len(self._totals) if self.kind == "objective" else None
        metadata = {FINISHED: str(finished), TOTAL: str(total)}
        if self.depth is not None:
            metadata.update({ROUND: str(rounds or 1), DEPTH: str(self.depth)})
        return {
            "data": round(100.0 * finished / total, 2) if total else 0.0,
            "description": progress_line(finished, total, rounds, self.depth),
            "metadata_": metadata,
        }

    async def _create_progress(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactCreate

        async with get_client() as client:
            artifact = await client.create_artifact(
                ArtifactCreate(
                    type="progress",
                    key=f"{self.key}-progress",
                    flow_run_id=self.flow_run_id,
                    **self._progress_update(),
                )
            )
        self._artifact_id = artifact.id

    async def _push_progress(self) -> None:
        """Send the counts while they change, at most once every PROGRESS_INTERVAL seconds."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        try:
            while self._dirty and self._artifact_id is not None:
                wait = self._last_push + PROGRESS_INTERVAL - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_push = time.monotonic()
                self._dirty = False
                self._sending = True
                try:
                    async with get_client() as client:
                        await client.update_artifact(
                            self._artifact_id, ArtifactUpdate(**self._progress_update())
                        )
                finally:
                    self._sending = False
        except Exception as exc:
            _logger().debug("Progress update dropped: %s", exc)
        finally:
            self._pushing = None

    async def _flush(self) -> None:
        """Send the final counts now, after any update already on the wire.

        An update waiting out the interval is dropped; one being sent is awaited, never
        cancelled: cancelling stops our side only, the server may still apply it, and applied
        after the final one it would leave the artifact showing stale counts ("0 of 3 tasks
        finished" on a finished run, seen on a busy machine).
        """
        if self._pushing is not None:
            if self._sending:
                self._dirty = False  # it stops after this send: the final one follows
            else:
                self._pushing.cancel()
            await asyncio.gather(self._pushing, return_exceptions=True)
        self._dirty = True
        self._last_push = 0.0
        await self._push_progress()

    # -- the end ---------------------------------------------------------------------------

    async def publish_workflow(
        self, result: WorkflowResult, graph: WorkflowGraph, spec: WorkflowSpec | None = None
    ) -> None:
        """Final progress, the report (with the spec's estimate beside the time taken), the
        task table and the DAG of a workflow run."""
        self.close()
        if not self.enabled:
            return
        await self._flush()
        estimated = None
        if spec is not None:  # offline (hints, options, defaults): no extra API call per run
            from promptdag.engine.estimate import estimate

            estimated = estimate(spec, graph)
        await self._publish(
            report=workflow_report(result, estimated),
            rows=task_rows(result.tasks),
            dag=mermaid_markdown(graph.mermaid(), len(graph.names)),
            what=f"workflow {result.name!r}",
        )

    async def publish_objective(self, result: ObjectiveResult) -> None:
        """Final progress, the answer and a table of every round's tasks."""
        self.close()
        if not self.enabled:
            return
        await self._flush()
        await self._publish(
            report=objective_report(result),
            rows=objective_task_rows(result),
            dag=None,
            what=f"objective {result.objective!r}",
        )

    async def _publish(
        self, report: str, rows: list[dict[str, Any]], dag: str | None, what: str
    ) -> None:
        from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

        calls = [
            acreate_markdown_artifact(report, key=f"{self.key}-report",
                                      description=f"Report of {what}"),
            acreate_table_artifact(rows, key=f"{self.key}-tasks",
                                   description=f"Tasks of {what}"),
        ]
        if dag is not None:
            calls.append(acreate_markdown_artifact(dag, key=f"{self.key}-dag",
                                                   description=f"DAG of {what} (Mermaid)"))
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(outcome, BaseException):
                _logger().warning("An artifact was not created: %s", outcome)

    # -- naming ----------------------------------------------------------------------------

    async def _key_stem(self, deployment_id: UUID | None) -> str:
        parents = [view for view in _views.get() if view is not self and view.key]
        if parents:  # a round of an objective: under the objective's key
            return f"{parents[-1].key}-round"
        if deployment_id is not None:
            from prefect.client.orchestration import get_client

            async with get_client() as client:
                deployment = await client.read_deployment(deployment_id)
            return slug(deployment.name)
        return slug(f"{self.kind}-{self.label}")

    async def _add_tags(self, current: list[str]) -> None:
        wanted = [tag for tag in ["promptdag", *self.tags] if tag not in current]
        if not wanted:
            return
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            await client.update_flow_run(self.flow_run_id, tags=[*current, *wanted])  # type: ignore[arg-type]
