"""Lost workers: a deployment run whose process died is marked Crashed, then can be retried.

Prefect 3 flow runs send a heartbeat event every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds
(default 180). Prefect's own zombie-detection recipe is an automation: when a flow run's
heartbeat is not followed, within `within` seconds, by another heartbeat or by a final state,
set the run to Crashed. prefect.yaml's deployment runs send heartbeats every
`HEARTBEAT_SECONDS` (their job variables) and `promptdag.deployments.serve` does the same; the
automation covers only flow runs tagged `promptdag` (every deployment of prefect.yaml carries
that tag), so a run sending Prefect's default 3-minute heartbeats is never taken for dead.

A killed worker's run is then Crashed within `WITHIN_SECONDS` of its last heartbeat;
`promptdag result`/`submit --wait` stop waiting at once (Crashed is final) and `promptdag
retry RUN_ID` reschedules it, reusing the tasks it finished.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

AUTOMATION = "promptdag: crash runs that stopped sending heartbeats"
HEARTBEAT_SECONDS = 30  # Prefect's minimum
WITHIN_SECONDS = 75  # two heartbeats missed, and some slack for a loaded machine
TAG = "promptdag"
FINAL_EVENTS = [f"prefect.flow-run.{name}" for name in
                ("Completed", "Failed", "Cancelled", "Crashed", "Cancelling", "Paused",
                 "Suspended", "Scheduled", "AwaitingRetry")]


def automation() -> AutomationCore:
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=AUTOMATION,
        description="Prefect's zombie-flow-run detection for promptdag's deployments: a run "
        f"tagged {TAG!r} with no heartbeat for {WITHIN_SECONDS} s is marked Crashed.",
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification({"prefect.resource.role": "tag",
                                                 "prefect.resource.id": f"prefect.tag.{TAG}"}),
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=WITHIN_SECONDS),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {WITHIN_SECONDS} s: its process died (a killed worker?)"
            "; `promptdag retry` it to finish it, reusing its finished tasks",
        )],
    )


async def aensure_crash_detection() -> bool:
    """Create the automation on the current API if it is missing; True when created."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        if await client.read_automations_by_name(AUTOMATION):
            return False
        await client.create_automation(automation())
        return True


def ensure_crash_detection() -> bool:
    return asyncio.run(aensure_crash_detection())
