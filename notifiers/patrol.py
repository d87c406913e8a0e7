"""The patrol notifier: one assignment per targeted site on confirmation, cancelled on close.

Assignment ids are deterministic (alert, site): a redelivered event re-publishes
the same assignment instead of creating a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.audience import PatrolTarget, resolve_audience
from prevent.contracts import (
    PATROLS,
    Alert,
    AlertStatus,
    PatrolAssignment,
    PatrolStatus,
    assignment_id_for,
    utcnow,
)
from prevent.playbooks.schema import Playbook
from prevent.storage import outbox
from prevent.storage.tables import PatrolRow


def assignment_for(alert: Alert, target: PatrolTarget, starts_at: datetime) -> PatrolAssignment:
    plan = target.plan
    instructions = plan.instructions
    if alert.exercise:
        instructions = f"EXERCISE — {instructions}"
    return PatrolAssignment(
        assignment_id=assignment_id_for(alert.alert_id, target.site_id), alert_id=alert.alert_id,
        site_id=target.site_id, site_name=target.site_name, zone=target.zone_id,
        status=PatrolStatus.ASSIGNED, starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=plan.duration_hours), every_minutes=plan.every_minutes,
        priority=plan.priority, instructions=instructions, floor_plan_ref=target.floor_plan_ref,
        lat=target.lat, lon=target.lon, exercise=alert.exercise, at=utcnow(),
    )


async def handle_alert(session: AsyncSession, alert: Alert, playbook: Playbook) -> int:
    """Assign or cancel patrols for this alert state, in the caller's transaction."""
    if alert.status is AlertStatus.CONFIRMED:
        return await _assign(session, alert, playbook)
    if alert.status is AlertStatus.CLOSED:
        return await _cancel(session, alert)
    return 0


async def _assign(session: AsyncSession, alert: Alert, playbook: Playbook) -> int:
    plan = await resolve_audience(session, alert, playbook)
    created = 0
    for target in plan.patrols:
        assignment_id = assignment_id_for(alert.alert_id, target.site_id)
        if await session.get(PatrolRow, assignment_id) is not None:
            continue  # already assigned: a severity update does not duplicate patrols
        assignment = assignment_for(alert, target, alert.updated_at)
        session.add(PatrolRow(assignment_id=assignment_id, alert_id=alert.alert_id,
                              site_id=target.site_id, zone_id=target.zone_id,
                              status=assignment.status.value,
                              payload=assignment.model_dump(mode="json"),
                              created_at=assignment.at, updated_at=assignment.at))
        await outbox.stage(session, PATROLS, assignment, key=assignment_id,
                           event_id=f"{assignment_id}:assigned", subtype="assigned")
        created += 1
    return created


async def _cancel(session: AsyncSession, alert: Alert) -> int:
    rows = (await session.execute(select(PatrolRow).where(
        PatrolRow.alert_id == alert.alert_id,
        PatrolRow.status == PatrolStatus.ASSIGNED.value))).scalars().all()
    for row in rows:
        cancelled = PatrolAssignment.model_validate(row.payload).model_copy(
            update={"status": PatrolStatus.CANCELLED, "at": utcnow()})
        row.status = cancelled.status.value
        row.payload = cancelled.model_dump(mode="json")
        row.updated_at = cancelled.at
        await outbox.stage(session, PATROLS, cancelled, key=row.assignment_id,
                           event_id=f"{row.assignment_id}:cancelled", subtype="cancelled")
    return len(rows)
